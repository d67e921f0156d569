// The same answer and the same 100 ms of "work", buffered: nothing reaches the client before the end.
export const handler = async () => {
  await new Promise((resolve) => setTimeout(resolve, 100));
  return { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: 'first chunk\nthe rest\n' };
};
