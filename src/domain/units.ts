/** @module Parsing of the human units used in resources: durations (`10s`), sizes (`128Mi`), CPU (`500m`). */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1000,
  K: 1000,
  M: 1000 ** 2,
  G: 1000 ** 3,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
};

/** `500ms`, `10s`, `5m`, `1h`, `1m30s`; a bare number means seconds. Returns milliseconds or undefined. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(match[1]) * (DURATION_UNITS[match[2] ?? 's'] ?? 1000);
  }
  return total;
}

/** `128Mi`, `6Mi`, `1Gi`, `512Ki`, `100M`, `1000`; returns bytes or undefined. */
export function parseBytes(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const match = value.trim().match(/^(\d+(\.\d+)?)\s*(Ki|Mi|Gi|k|K|M|G)?B?$/);
  if (!match) return undefined;
  const factor = SIZE_UNITS[match[3] ?? ''];
  return factor === undefined ? undefined : Math.round(Number(match[1]) * factor);
}

/** `"0.5"`, `0.5`, `"500m"` → cores; returns undefined when malformed. */
export function parseCpu(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  const text = value.trim();
  const milli = text.match(/^(\d+)m$/);
  if (milli) return Number(milli[1]) / 1000;
  if (/^\d+(\.\d+)?$/.test(text) && Number(text) > 0) return Number(text);
  return undefined;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}Gi`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}Mi`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}Ki`;
  return String(bytes);
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
