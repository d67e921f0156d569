// Does nothing: the event benchmarks measure the trigger and the platform, not the handler.
export default async function handler() {
  return null;
}
