/**
 * @module The function a stem cell binds and invokes once while it boots (bootstrap.mts `warmBind`), so a
 * cold start finds the bind's and the invocation's code compiled. Shaped like a user's handler.
 */
export default async function handler(event: unknown): Promise<Record<string, unknown>> {
  return { warm: event !== undefined };
}
