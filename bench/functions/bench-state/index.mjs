// Times ctx.state operations from inside a function: each sample is one call to the platform and back.
export default async function handler(event, ctx) {
  const count = Number(event.query.n ?? 1000);
  const value = { user: 'guest', cart: ['apple', 'pear'], n: 1 };
  const set = [];
  const get = [];
  const incr = [];
  for (let i = 0; i < count; i++) {
    const key = `k${i % 100}`;
    let started = performance.now();
    await ctx.state.set(key, value, { ttl: 600 });
    set.push(performance.now() - started);
    started = performance.now();
    await ctx.state.get(key);
    get.push(performance.now() - started);
    started = performance.now();
    await ctx.state.incr('counter');
    incr.push(performance.now() - started);
  }
  return { set, get, incr };
}
