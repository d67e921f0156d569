// Lambda response streaming: the first chunk at once, the rest after 100 ms of "work".
export const handler = awslambda.streamifyResponse(async (_event, responseStream) => {
  responseStream.setContentType('text/plain');
  responseStream.write('first chunk\n');
  await new Promise((resolve) => setTimeout(resolve, 100));
  responseStream.write('the rest\n');
  responseStream.end();
});
