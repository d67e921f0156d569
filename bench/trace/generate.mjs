// A seeded synthetic multi-function workload shaped like the Azure Functions 2019 trace, as published in
// "Serverless in the Wild" (Shahrad et al., USENIX ATC'20, §3) — the trace itself is not redistributed here:
// - invocation rates are heavy-tailed across functions: log10(invocations/day) ~ Normal(1.6, 1.77), which puts
//   45% of functions at most once an hour and 81% at most once a minute (Fig. 5a), a few far more often;
// - about a third of functions are timer-driven (Fig. 4: timers are the second most common trigger), on the
//   usual cron periods, and so perfectly periodic;
// - others arrive in bursts (on/off: long quiet spells, then minutes of heavy use);
// - the rest arrive at random (HTTP, queues), and all but the timers follow a diurnal curve (Fig. 3);
// - execution times are log-normal with a median around 0.6 s and a long tail (Fig. 7);
// - memory is mostly small (Fig. 8): 128 MiB for most functions, some 256 and 512 MiB.
// Same seed, same trace: every policy replays the very same invocations.

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;

/** Small, fast, good enough for workloads: mulberry32. */
export function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(rand) {
  // Box–Muller; 1 - rand() keeps log away from 0.
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

function pick(rand, choices) {
  let x = rand();
  for (const [value, weight] of choices) {
    x -= weight;
    if (x <= 0) return value;
  }
  return choices.at(-1)[0];
}

/** Invocation rate multiplier over the day: trough (0.4×) at midnight, peak (1.6×) at noon. */
export function diurnal(timeMs) {
  return 1 + 0.6 * Math.sin(2 * Math.PI * ((timeMs % DAY_MS) / DAY_MS - 0.25));
}

const TIMER_PERIODS_MIN = [
  [1, 0.3],
  [5, 0.25],
  [10, 0.1],
  [15, 0.1],
  [30, 0.1],
  [60, 0.1],
  [120, 0.05],
];

/**
 * The trace: `functions` described, and `events` sorted by time (trace milliseconds from midnight), each
 * `{ at, fn, execMs }`. `maxDailyRate` caps the busiest functions so the replay fits one small machine.
 */
export function generateTrace({ seed = 42, functions = 48, hours = 24, maxDailyRate = 30_000 } = {}) {
  const rand = random(seed);
  const durationMs = hours * 3_600_000;
  const specs = [];
  const events = [];
  for (let i = 0; i < functions; i++) {
    const kind = pick(rand, [
      ['timer', 0.3],
      ['bursty', 0.15],
      ['random', 0.55],
    ]);
    const spec = {
      name: `fn-${String(i).padStart(2, '0')}-${kind}`,
      kind,
      runtime: rand() < 0.25 ? 'python3' : 'node20',
      memoryMiB: pick(rand, [
        [128, 0.7],
        [256, 0.25],
        [512, 0.05],
      ]),
      execMedianMs: Math.min(30_000, Math.max(20, 600 * Math.exp(1.0 * normal(rand)))),
    };
    const exec = () => Math.max(1, spec.execMedianMs * Math.exp(0.25 * normal(rand)));
    if (kind === 'timer') {
      const periodMs = pick(rand, TIMER_PERIODS_MIN) * MINUTE_MS;
      spec.periodMs = periodMs;
      // Cron fires on the period; the trigger adds a little jitter.
      for (let at = rand() * periodMs; at < durationMs; at += periodMs)
        events.push({ at: at + rand() * 1000, fn: i, execMs: exec() });
    } else if (kind === 'random') {
      const daily = Math.min(maxDailyRate, Math.max(1, 10 ** (1.6 + 1.77 * normal(rand))));
      spec.dailyRate = Math.round(daily);
      // A non-homogeneous Poisson process by thinning: candidates at the peak rate, kept by the curve.
      const peak = (daily / DAY_MS) * 1.6;
      for (let at = -Math.log(1 - rand()) / peak; at < durationMs; at += -Math.log(1 - rand()) / peak)
        if (rand() * 1.6 < diurnal(at)) events.push({ at, fn: i, execMs: exec() });
    } else {
      // Long quiet spells (90 min on average) and bursts of a few minutes at 3-30 requests a minute.
      const burstRate = 10 ** (Math.log10(0.05) + rand() * (Math.log10(0.5) - Math.log10(0.05))) / 1000;
      spec.burstRatePerMin = Number((burstRate * MINUTE_MS).toFixed(1));
      let at = -Math.log(1 - rand()) * 90 * MINUTE_MS;
      while (at < durationMs) {
        const end = at + (1 + rand() * 6) * MINUTE_MS;
        for (let t = at; t < Math.min(end, durationMs); t += -Math.log(1 - rand()) / burstRate)
          if (rand() * 1.6 < diurnal(t)) events.push({ at: t, fn: i, execMs: exec() });
        at = end + -Math.log(1 - rand()) * 90 * MINUTE_MS;
      }
    }
    specs.push(spec);
  }
  events.sort((a, b) => a.at - b.at);
  for (const spec of specs) spec.invocations = 0;
  for (const event of events) specs[event.fn].invocations += 1;
  return { seed, hours, durationMs, functions: specs, events };
}

/** A short description of a trace's shape, for the report. */
export function describeTrace(trace) {
  const counts = trace.functions.map((fn) => fn.invocations).sort((a, b) => b - a);
  const total = counts.reduce((sum, n) => sum + n, 0);
  const perDay = (n) => (n * 24) / trace.hours;
  const share = (predicate) =>
    Math.round(
      (100 * trace.functions.filter((fn) => predicate(perDay(fn.invocations))).length) / counts.length,
    );
  const top = Math.max(1, Math.round(counts.length * 0.2));
  return {
    functions: counts.length,
    invocations: total,
    byKind: Object.fromEntries(
      ['timer', 'random', 'bursty'].map((kind) => [
        kind,
        trace.functions.filter((fn) => fn.kind === kind).length,
      ]),
    ),
    python: trace.functions.filter((fn) => fn.runtime === 'python3').length,
    atMostHourlyPct: share((n) => n <= 24),
    atMostPerMinutePct: share((n) => n <= 1440),
    top20PctShareOfInvocations: Number(
      ((100 * counts.slice(0, top).reduce((s, n) => s + n, 0)) / total).toFixed(1),
    ),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const trace = generateTrace();
  process.stdout.write(
    `${JSON.stringify({ shape: describeTrace(trace), functions: trace.functions }, null, 2)}\n`,
  );
}
