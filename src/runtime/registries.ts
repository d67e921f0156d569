/** @module Where a package manager, configured by its environment, connects during a dependency build. */

/**
 * The URLs listed in the first of `names` that is set (whitespace-separated), or `defaults`; then the
 * HTTP(S) proxy the package manager would go through, when one is set.
 */
export function registriesOf(
  env: Readonly<Record<string, string>>,
  names: readonly string[],
  defaults: readonly string[],
): string[] {
  const lower = new Map(Object.entries(env).map(([key, value]) => [key.toLowerCase(), value]));
  const configured = names
    .flatMap((name) => (lower.get(name.toLowerCase()) ?? '').split(/\s+/))
    .filter(Boolean);
  const proxies = ['https_proxy', 'http_proxy'].flatMap((name) => lower.get(name) ?? []).filter(Boolean);
  return [...new Set([...(configured.length > 0 ? configured : defaults), ...proxies])];
}
