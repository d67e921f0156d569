// A projection of the `orders` streams: one summary per order in ctx.state, updated by each event a Trigger
// delivers (in stream order, at least once). Each summary lists the event ids it applied, and is replaced
// only by compare-and-set, so an event delivered again is skipped: applied once, never twice.
// GET /function/order-summary answers every summary.

const PREFIX = 'order:';

function apply(summary, event) {
  switch (event.type) {
    case 'OrderPlaced':
      return { ...summary, status: 'open', customer: event.data.customer ?? null };
    case 'ItemAdded':
      return {
        ...summary,
        items: summary.items + event.data.quantity,
        totalCents: summary.totalCents + event.data.quantity * event.data.priceCents,
      };
    case 'OrderPaid':
      return { ...summary, status: 'paid' };
    default:
      return summary;
  }
}

export default async function handler(event, ctx) {
  if (event.specversion === undefined) {
    const orders = {};
    for (const key of await ctx.state.keys(PREFIX, { limit: 10000 }))
      orders[key.slice(PREFIX.length)] = await ctx.state.get(key);
    return { orders };
  }
  const delay = Number(process.env.DELAY_MS ?? 0);
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  const key = PREFIX + event.subject;
  for (;;) {
    const current = await ctx.state.get(key);
    const summary = current ?? { status: 'new', items: 0, totalCents: 0, applied: [] };
    if (summary.applied.includes(event.id)) return { skipped: event.id };
    const next = { ...apply(summary, event), applied: [...summary.applied, event.id] };
    if (await ctx.state.cas(key, current, next)) return { applied: event.id };
  }
}
