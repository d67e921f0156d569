// The {{name}} function. Hearth calls the default export once per HTTP request:
//   event: { method, path, query, headers, body }  (a JSON body arrives already parsed)
//   ctx:   { invocationId, functionName, namespace, getRemainingTimeInMillis(), log }
// Return any JSON-serialisable value for a 200 JSON response, or { statusCode, headers, body }.
export default async function handler(event, ctx) {
  const name = event.body?.name ?? event.query.name ?? 'world';
  return {
    message: `Hello, ${name}!`,
    method: event.method,
    path: event.path,
    invocationId: ctx.invocationId,
  };
}
