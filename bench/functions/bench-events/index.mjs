// Measures ctx.events from inside a function, so the figures are the platform's (call frame, SQLite) and
// not an HTTP client's: `pairs` times append-with-expectedVersion + read, `rebuild` folds a long stream.
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const stats = (samples) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: +percentile(sorted, 50).toFixed(3), p99: +percentile(sorted, 99).toFixed(3) };
};

async function pairs(ctx, { stream, count }) {
  const appendMs = [];
  const readMs = [];
  let version = await ctx.events.version(stream);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const appended = await ctx.events.append(
      stream,
      { type: 'Counted', data: { i } },
      { expectedVersion: version },
    );
    const t1 = performance.now();
    await ctx.events.read(stream, { from: appended.version, limit: 1 });
    const t2 = performance.now();
    version = appended.version;
    appendMs.push(t1 - t0);
    readMs.push(t2 - t1);
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    count,
    append: stats(appendMs),
    read: stats(readMs),
    pair: stats(appendMs.map((a, i) => a + readMs[i])),
    appendsPerSecond: Math.round(count / seconds),
  };
}

async function fold(ctx, stream, from, state) {
  let next = from;
  for (;;) {
    const page = await ctx.events.read(stream, { from: next, limit: 10000 });
    for (const event of page) {
      state.count += 1;
      state.total += event.data.qty * event.data.price;
      next = event.version + 1;
    }
    if (page.length < 10000) return { state, version: next - 1 };
  }
}

async function rebuild(ctx, { stream, events }) {
  let version = await ctx.events.version(stream);
  const fillStarted = performance.now();
  while (version < events) {
    const batch = Array.from({ length: Math.min(1000, events - version) }, (_, i) => ({
      type: 'ItemAdded',
      data: { qty: 1 + ((version + i) % 3), price: 250 },
    }));
    version = (await ctx.events.append(stream, batch, { expectedVersion: version })).version;
  }
  const fillMs = performance.now() - fillStarted;
  const t0 = performance.now();
  const full = await fold(ctx, stream, 1, { count: 0, total: 0 });
  const withoutSnapshotMs = performance.now() - t0;
  await ctx.events.snapshot(stream, full.version, full.state);
  // A hundred events after the snapshot, as a stream that keeps growing has.
  await ctx.events.append(
    stream,
    Array.from({ length: 100 }, () => ({ type: 'ItemAdded', data: { qty: 1, price: 250 } })),
    { expectedVersion: full.version },
  );
  const t1 = performance.now();
  const snapshot = await ctx.events.latestSnapshot(stream);
  const fromSnapshot = await fold(ctx, stream, snapshot.version + 1, { ...snapshot.state });
  const withSnapshotMs = performance.now() - t1;
  return {
    events: full.version,
    fillMs: Math.round(fillMs),
    withoutSnapshotMs: Math.round(withoutSnapshotMs),
    withSnapshotMs: +withSnapshotMs.toFixed(2),
    rebuiltCount: fromSnapshot.state.count,
  };
}

export default async function handler(event, ctx) {
  const body = event.body ?? {};
  if (body.mode === 'pairs') return pairs(ctx, body);
  if (body.mode === 'rebuild') return rebuild(ctx, body);
  return { ok: true };
}
