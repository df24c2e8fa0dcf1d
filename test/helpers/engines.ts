// The engines every test body runs against: each build of the build table (src/wasm/builds.ts)
// through the public createEngine(), and the debug build (SIMD kernels with bounds/alignment/
// count assertions) through @assemblyscript/loader, whose abort handler turns a kernel assertion
// into an Error with the assertion's message, file and line; its exports are also wrapped by the
// kernel registry's checks (src/wasm/kernels.ts: every pointer range, alignment and count).
import { readFile } from 'node:fs/promises';
import { instantiate } from '@assemblyscript/loader';
import { createEngine, Engine } from '../../src/engine.js';
import { BUILD_NAMES, type Build } from '../../src/wasm/builds.js';
import { checkedKernels, type KernelExports } from '../../src/wasm/kernels.js';

export type BuildName = Build | 'debug';
export const BUILDS: readonly BuildName[] = [...BUILD_NAMES, 'debug'];

/** The debug build; `checked` (default): its exports wrapped by the registry's checks too. */
export async function loadDebugEngine(checked = true): Promise<Engine> {
  const bytes = await readFile(new URL('../../build/batchnorm.debug.wasm', import.meta.url));
  const kernels = (await instantiate<Record<string, unknown>>(bytes, {})).exports as unknown as KernelExports;
  return new Engine(checked ? checkedKernels(kernels) : kernels, 'simd');
}

/**
 * One build's single-threaded engine (`threads: 1`, today's engine: its own non-shared memory);
 * test/threads.test.ts covers the threaded engines against these.
 */
export async function makeEngine(build: BuildName): Promise<Engine> {
  if (build === 'debug') return loadDebugEngine();
  const engine = await createEngine({ build, threads: 1 });
  if (engine.build !== build) throw new Error(`asked for the ${build} build, got ${engine.build}`);
  return engine;
}
