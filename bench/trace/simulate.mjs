// `node bench/trace/simulate.mjs`: the scaling policies' own decisions on the trace replay's day, offline and
// deterministic — no platform, no sandboxes, no CPU contention. Each policy (the built `dist/` one) is driven
// tick by tick on the same compressed clock `replay.mjs` uses; an instance starts at once when a request finds
// none free (a cold start) or when the policy asks for one, and stops when the policy lets it go. It counts
// what the real replay cannot tell apart from the machine's noise: instance starts by why, cold starts and idle
// memory·time. It leaves out what only the platform has (start latency, the node budget, pre-warms held back
// a tick, the stem-cell pools), so its figures are the policy's, not the platform's: on a shared machine,
// compare policies with it and measure latency with the real replay.
//
// Options: --seed 42 --hours 24 --compression 360 --functions 48 --start-ms 8 --slice 8-12
//   --dist DIR (another build's dist/, e.g. the previous commit's, to compare rule changes).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ROOT, round } from '../lib.mjs';
import { generateTrace } from './generate.mjs';

const { values: args } = parseArgs({
  options: {
    seed: { type: 'string', default: '42' },
    hours: { type: 'string', default: '24' },
    compression: { type: 'string', default: '360' },
    functions: { type: 'string', default: '48' },
    'start-ms': { type: 'string', default: '8' },
    slice: { type: 'string' },
    dist: { type: 'string', default: join(ROOT, 'dist') },
  },
});
const C = Number(args.compression);
const START_MS = Number(args['start-ms']);
// The replay's compressed timing (replay.mjs): a 20 ms tick, the windows and idleTimeout divided by C.
const TICK_MS = 20;
const TIMING = {
  tickMs: TICK_MS,
  stableWindowMs: Math.round(60_000 / C),
  panicWindowMs: Math.max(2 * TICK_MS, Math.round(6_000 / C)),
  panicThreshold: 2,
  maxScaleDownRate: 2,
};
const IDLE_TIMEOUT_MS = Math.round((10 * 60_000) / C);
/** The platform's defaults (src/domain/function.ts) with the replay's manifest (max 30, idleTimeout). */
const SCALING = { min: 0, max: 30, idleTimeoutMs: IDLE_TIMEOUT_MS, warmPoolRatio: 0.1 };
const NODE_CAPACITY = 100;

const { HybridAutoscaler } = await import(
  pathToFileURL(join(args.dist, 'scheduler/autoscaler/hybrid.js')).href
);
const { FixedKeepAlive } = await import(pathToFileURL(join(args.dist, 'scheduler/autoscaler/fixed.js')).href);

function traceToSimulate() {
  const hours = Number(args.hours);
  const trace = generateTrace({ seed: Number(args.seed), hours, functions: Number(args.functions) });
  if (args.slice === undefined) return trace;
  const [from, to] = args.slice.split('-').map((hour) => Number(hour) * 3_600_000);
  const events = trace.events
    .filter((event) => event.at >= from && event.at < to)
    .map((event) => ({ ...event, at: event.at - from }));
  return { ...trace, durationMs: to - from, events };
}

/** One policy over the whole trace; returns its figures. */
function simulate(policy, trace) {
  const fns = trace.functions.map((fn) => ({
    key: `default/${fn.name}`,
    memoryMiB: fn.memoryMiB,
    capacity: fn.runtime === 'python3' ? 1 : NODE_CAPACITY,
    /** Each instance: requests in flight (their end times) and when it was last used. */
    instances: [],
    everStarted: false,
    /** The replay starts each function parked at zero (`DELETE …/instances`) until its first request. */
    parked: true,
    /** A pre-warmed instance not used yet: counted as used or never used when it serves or goes. */
    prewarmed: new Set(),
    arrivals: 0,
    starts: 0,
    idleMiBms: 0,
  }));
  const classes = {
    'first start': 0,
    'pre-warm, used': 0,
    'pre-warm, never used': 0,
    'cold again after a release': 0,
    'above one instance': 0,
  };
  let coldStarts = 0;
  let idleMiBms = 0;
  const start = (fn, now, kind) => {
    const instance = { ends: [], lastUsedAt: now };
    if (fn.instances.length > 0) classes['above one instance'] += 1;
    else if (kind === 'prewarm') fn.prewarmed.add(instance);
    else classes[fn.everStarted ? 'cold again after a release' : 'first start'] += 1;
    fn.everStarted = true;
    fn.starts += 1;
    fn.instances.push(instance);
    return instance;
  };
  const events = trace.events;
  const endMs = trace.durationMs / C;
  let next = 0;
  for (let now = TICK_MS; now <= endMs + TICK_MS; now += TICK_MS) {
    // Requests of this tick, in order: each takes a free instance or starts one (a cold start).
    while (next < events.length && events[next].at / C <= now) {
      const event = events[next++];
      const fn = fns[event.fn];
      const at = event.at / C;
      fn.arrivals += 1;
      let instance = fn.instances.find((i) => i.ends.filter((end) => end > at).length < fn.capacity);
      if (instance === undefined) {
        instance = start(fn, at, 'cold');
        coldStarts += 1;
      }
      if (fn.prewarmed.delete(instance)) classes['pre-warm, used'] += 1;
      instance.ends = instance.ends.filter((end) => end > at);
      instance.ends.push(at + event.execMs / C);
      instance.lastUsedAt = at + event.execMs / C;
    }
    for (const fn of fns) {
      let ready = 0;
      let inFlight = 0;
      let idle = 0;
      for (const instance of fn.instances) {
        instance.ends = instance.ends.filter((end) => end > now);
        ready += 1;
        inFlight += instance.ends.length;
        if (instance.ends.length === 0) idle += 1;
        else instance.lastUsedAt = now;
      }
      idleMiBms += idle * fn.memoryMiB * TICK_MS;
      fn.idleMiBms += idle * fn.memoryMiB * TICK_MS;
      const decision = policy.decide(fn.key, SCALING, {
        now,
        arrivals: fn.arrivals,
        concurrency: inFlight,
        ready,
        starting: 0,
        capacity: fn.capacity,
        startMs: START_MS,
      });
      if (fn.arrivals > 0 || inFlight > 0) fn.parked = false;
      fn.arrivals = 0;
      const desired = Math.min(SCALING.max, Math.max(SCALING.min, fn.parked ? 0 : decision.desired));
      if (desired > ready) {
        const kind = ready === 0 && inFlight === 0 ? 'prewarm' : 'scale-up';
        for (let i = ready; i < desired; i++) start(fn, now, kind);
      } else if (ready > desired) {
        const going = fn.instances
          .filter((i) => i.ends.length === 0 && now - i.lastUsedAt >= decision.keepIdleMs)
          .sort((a, b) => a.lastUsedAt - b.lastUsedAt)
          .slice(0, ready - desired);
        for (const instance of going) {
          fn.instances.splice(fn.instances.indexOf(instance), 1);
          if (fn.prewarmed.delete(instance)) classes['pre-warm, never used'] += 1;
        }
      }
    }
  }
  const starts = Object.values(classes).reduce((sum, n) => sum + n, 0);
  // MiB·ms of compressed time → GiB·h of trace time, as replay.mjs reports it.
  const toGiBh = (mibMs) => round((mibMs * C) / 1000 / 1024 / 3600, 2);
  return {
    requests: events.length,
    coldStarts,
    coldStartRatio: round(coldStarts / Math.max(1, events.length), 4),
    instanceStarts: starts,
    startClasses: classes,
    idleGiBh: toGiBh(idleMiBms),
    byFunction: Object.fromEntries(
      trace.functions.map((spec, index) => [
        spec.name,
        { instanceStarts: fns[index].starts, idleGiBh: toGiBh(fns[index].idleMiBms) },
      ]),
    ),
  };
}

const trace = traceToSimulate();
const results = {
  dist: args.dist,
  startMs: START_MS,
  hybrid: simulate(new HybridAutoscaler(TIMING), trace),
  fixed: simulate(new FixedKeepAlive(TIMING), trace),
};
results.idleRatio = round(results.hybrid.idleGiBh / Math.max(1e-9, results.fixed.idleGiBh), 3);
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
