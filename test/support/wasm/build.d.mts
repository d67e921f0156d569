/** Types of build.mjs for the TypeScript suites. */
export type WasmModuleName = 'helloRust' | 'computeRust' | 'helloGo' | 'probe' | 'probeExports';
export function ensureRustTarget(): void;
export function buildWasmModules(): Record<WasmModuleName, string>;
