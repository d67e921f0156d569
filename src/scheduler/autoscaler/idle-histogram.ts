/**
 * @module A function's idle-time histogram, the core of the hybrid keep-alive policy of "Serverless in the
 * Wild" (Shahrad et al., USENIX ATC'20): how long the function stays idle between bursts of use, from which
 * the policy reads when to pre-warm (a low percentile) and how long to keep an instance (a high one).
 */

/** Bin edges grow geometrically from 100 ms: fine for short gaps, coarse where a few seconds do not matter. */
const FIRST_EDGE_MS = 100;
const GROWTH = 1.15;
/**
 * The range: gaps longer than this are out of bounds. The paper uses 4 hours and hands out-of-bounds apps to
 * an ARIMA forecast; we cover two days (daily timers fit) and fall back to the fixed keep-alive beyond it.
 */
export const HISTOGRAM_RANGE_MS = 48 * 3_600_000;
const BINS = Math.ceil(Math.log(HISTOGRAM_RANGE_MS / FIRST_EDGE_MS) / Math.log(GROWTH)) + 1;
/**
 * Each new idle period multiplies the older weights by this, so about 50 recent periods carry the shape and
 * a function whose rhythm changes (day and night) is followed rather than averaged forever.
 */
const DECAY = 0.98;

/** Upper edge of bin `i` in milliseconds (bin 0 holds everything shorter than the first edge). */
function upperEdge(i: number): number {
  return FIRST_EDGE_MS * GROWTH ** i;
}

function lowerEdge(i: number): number {
  return i === 0 ? 0 : upperEdge(i - 1);
}

function binOf(ms: number): number {
  if (ms < FIRST_EDGE_MS) return 0;
  return Math.min(BINS - 1, Math.ceil(Math.log(ms / FIRST_EDGE_MS) / Math.log(GROWTH)));
}

export class IdleHistogram {
  private readonly weights = new Float64Array(BINS);
  /**
   * The shortest idle period recorded in each bin, where `lowerQuantile` reads the pre-warm point: a timer's
   * periods all fall in one bin, and its lower edge lies up to a bin's width (15%) before them, on top of the
   * policy's 10% margin; every pre-warm held its instance that much longer (a 15-minute timer ~2 minutes).
   */
  private readonly shortest = new Float64Array(BINS).fill(Number.POSITIVE_INFINITY);
  private outOfBounds = 0;
  private weight = 0;
  /** Idle periods recorded, however old (the weights decay, this count does not). */
  samples = 0;

  record(idleMs: number): void {
    if (!Number.isFinite(idleMs) || idleMs < 0) return;
    for (let i = 0; i < BINS; i++) this.weights[i] = (this.weights[i] ?? 0) * DECAY;
    this.outOfBounds *= DECAY;
    this.weight = this.weight * DECAY + 1;
    this.samples += 1;
    if (idleMs > HISTOGRAM_RANGE_MS) this.outOfBounds += 1;
    else {
      const bin = binOf(idleMs);
      this.weights[bin] = (this.weights[bin] ?? 0) + 1;
      this.shortest[bin] = Math.min(this.shortest[bin] ?? idleMs, idleMs);
    }
  }

  /** The share of (decayed) idle periods longer than the histogram's range. */
  get outOfBoundsShare(): number {
    return this.weight === 0 ? 0 : this.outOfBounds / this.weight;
  }

  /**
   * The idle time below which a share `q` of idle periods ended, read at the shortest period recorded in its
   * bin (never below the bin's lower edge): the pre-warm point errs early, by no more than the bin's own spread.
   * Infinity when that share lies beyond the range.
   */
  lowerQuantile(q: number): number {
    const bin = this.binAt(q);
    if (bin === undefined) return Number.POSITIVE_INFINITY;
    const shortest = this.shortest[bin] ?? Number.POSITIVE_INFINITY;
    return Math.max(lowerEdge(bin), Math.min(upperEdge(bin), shortest));
  }

  /** As `lowerQuantile`, read at the bin's upper edge: the keep-alive end errs long. */
  upperQuantile(q: number): number {
    const bin = this.binAt(q);
    return bin === undefined ? Number.POSITIVE_INFINITY : upperEdge(bin);
  }

  /**
   * For an instance held idle from `fromMs` until `untilMs` (then released, or used when the period ends
   * first): the idle time it is expected to be held for each request it serves warm, over the periods that
   * reach `fromMs`. For random (Poisson) arrivals it is the mean gap, whatever the window. Infinity when no
   * period ends inside the window.
   */
  heldPerWarmRequestMs(fromMs: number, untilMs: number): number {
    if (untilMs < fromMs) return Number.POSITIVE_INFINITY;
    const first = binOf(fromMs);
    const last = binOf(untilMs);
    let held = this.outOfBounds * (untilMs - fromMs);
    let hits = 0;
    for (let i = first; i < BINS; i++) {
      const weight = this.weights[i] ?? 0;
      if (weight === 0) continue;
      const middle = Math.sqrt(Math.max(lowerEdge(i), FIRST_EDGE_MS / 2) * upperEdge(i));
      held += weight * Math.max(0, Math.min(middle, untilMs) - fromMs);
      if (i <= last) hits += weight;
    }
    return hits <= 0 ? Number.POSITIVE_INFINITY : held / hits;
  }

  /** As `lowerQuantile`, read at the bin's geometric middle: a best guess, such as the median. */
  middleQuantile(q: number): number {
    const bin = this.binAt(q);
    return bin === undefined
      ? Number.POSITIVE_INFINITY
      : Math.sqrt(Math.max(lowerEdge(bin), FIRST_EDGE_MS / 2) * upperEdge(bin));
  }

  /**
   * How much longer the function is expected to stay idle, having been idle `idleForMs` already: the median
   * of the idle periods longer than that, minus it. Infinity when no recorded period lasted this long.
   */
  expectedRemainingMs(idleForMs: number): number {
    let mass = this.outOfBounds;
    const first = binOf(idleForMs);
    for (let i = first; i < BINS; i++) mass += this.weights[i] ?? 0;
    if (mass <= 0) return Number.POSITIVE_INFINITY;
    let seen = 0;
    for (let i = first; i < BINS; i++) {
      seen += this.weights[i] ?? 0;
      if (seen >= mass / 2) {
        const middle = Math.sqrt(Math.max(lowerEdge(i), FIRST_EDGE_MS / 2) * upperEdge(i));
        return Math.max(0, middle - idleForMs);
      }
    }
    return Number.POSITIVE_INFINITY;
  }

  /**
   * Of the (decayed) idle periods that lasted at least `fromMs`, the share that ended by `untilMs`: how likely
   * an instance held idle from `fromMs` to `untilMs` is to serve the next request. Periods are placed by bin,
   * so the edges are as coarse as a bin (15%). 0 when no period lasted `fromMs`.
   */
  shareEndingWithin(fromMs: number, untilMs: number): number {
    if (untilMs < fromMs) return 0;
    const first = binOf(fromMs);
    const last = binOf(untilMs);
    let reaching = this.outOfBounds;
    let ending = 0;
    for (let i = first; i < BINS; i++) {
      const weight = this.weights[i] ?? 0;
      reaching += weight;
      if (i <= last) ending += weight;
    }
    return reaching <= 0 ? 0 : ending / reaching;
  }

  private binAt(q: number): number | undefined {
    if (this.weight <= 0) return undefined;
    const target = Math.min(1, Math.max(0, q)) * this.weight;
    let seen = 0;
    for (let i = 0; i < BINS; i++) {
      seen += this.weights[i] ?? 0;
      if (seen >= target && seen > 0) return i;
    }
    return undefined;
  }
}
