// Sleeps `?ms=` (default 0), then answers: a stand-in for work that holds an instance's slot.
export default async function handler(event) {
  const ms = Number(event.query.ms ?? 0);
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  return { ok: true };
}
