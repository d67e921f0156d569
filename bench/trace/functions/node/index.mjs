// A trace function: busy for `?ms=` milliseconds (the trace's execution time, compressed), like an I/O-bound handler.
export default async function handler(event) {
  const ms = Number(event.query.ms ?? 1);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { ms };
}
