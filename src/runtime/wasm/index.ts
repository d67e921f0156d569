/**
 * @module The WebAssembly runtime (`wasm`), host side: its guest is a Node process running the function's
 * WASI preview 1 module on V8 and node:wasi, inside the same sandbox walls as every other function. It has
 * no dependency layer (a module is self-contained) and checks the module at deploy.
 */

import { realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FunctionSpec } from '../../domain/function.js';
import type { BuildStep, DependencyManifest, LaunchSpec, Runtime } from '../index.js';
import { GUEST_TOKEN } from '../index.js';
import { guestDir, SANDBOX_PATH } from '../paths.js';
import { checkWasmModule } from './module.js';

export { wasmHostKind } from './host.js';
export { checkWasmModule, parseWasmHandler, RUNTIME_RESERVE_MIB } from './module.js';

/**
 * V8 flags of the guest. Lazy compilation and validation: a function body is compiled (and validated) when
 * first called, so binding a 58 KiB Rust module takes ~0.5 ms instead of ~4 ms, and a 3 MiB Go one ~3 ms
 * instead of ~70 ms; the host validated the whole module at deploy. No warnings: node:wasi is "experimental"
 * in Node 20 and would say so on the function's stderr.
 */
const GUEST_FLAGS = ['--no-warnings', '--wasm-lazy-compilation', '--wasm-lazy-validation'];

export class WasmRuntime implements Runtime {
  readonly name = 'wasm' as const;
  readonly unavailable: string | undefined;
  /** Modules carry no dependency layer; this only has to be stable. */
  readonly abi = 'wasi-preview1';
  readonly layerOutput = '';
  private readonly node = realpathSync(process.execPath);

  constructor() {
    this.unavailable =
      typeof WebAssembly === 'object' ? undefined : 'wasm functions need a Node.js built with WebAssembly';
  }

  launchSpec(): LaunchSpec {
    return {
      command: this.node,
      args: [...GUEST_FLAGS, `${GUEST_TOKEN}/bootstrap.mjs`],
      env: { PATH: SANDBOX_PATH, HOME: '/tmp', LANG: 'C.UTF-8', TMPDIR: '/tmp' },
      guestDir: guestDir('wasm'),
      readOnlyPaths: this.node.startsWith('/usr/') ? [] : [dirname(dirname(this.node))],
    };
  }

  dependencyManifest(): DependencyManifest | undefined {
    return undefined;
  }

  buildCommand(): BuildStep {
    throw new Error('wasm functions have no dependency layer');
  }

  async checkCode(codeDir: string, spec: FunctionSpec): Promise<void> {
    await checkWasmModule(codeDir, spec);
  }
}
