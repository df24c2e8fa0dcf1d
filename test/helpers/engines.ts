// The engines every test body runs against: the SIMD and scalar release builds through the
// public createEngine(), and the debug build (SIMD kernels with bounds/alignment/count
// assertions) through @assemblyscript/loader, whose abort handler turns a kernel assertion
// into an Error with the assertion's message, file and line.
import { readFile } from 'node:fs/promises';
import { instantiate } from '@assemblyscript/loader';
import { createEngine, Engine, type KernelExports } from '../../src/engine.js';

export type BuildName = 'simd' | 'scalar' | 'debug';
export const BUILDS: readonly BuildName[] = ['simd', 'scalar', 'debug'];

export async function loadDebugEngine(): Promise<Engine> {
  const bytes = await readFile(new URL('../../build/batchnorm.debug.wasm', import.meta.url));
  const { exports } = await instantiate<Record<string, unknown>>(bytes, {});
  return new Engine(exports as unknown as KernelExports, 'simd');
}

export async function makeEngine(build: BuildName): Promise<Engine> {
  if (build === 'debug') return loadDebugEngine();
  const engine = await createEngine({ simd: build === 'simd' });
  if (engine.build !== build) throw new Error(`asked for the ${build} build, got ${engine.build}`);
  return engine;
}
