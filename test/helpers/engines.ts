// The engines every test body runs against: each build of the build table (src/wasm/builds.ts)
// through the public createEngine(), and the debug build (SIMD kernels with bounds/alignment/
// count assertions) through @assemblyscript/loader, whose abort handler turns a kernel assertion
// into an Error with the assertion's message, file and line; its exports are also wrapped by the
// kernel registry's checks (src/wasm/kernels.ts: every pointer range, alignment and count).
//
// A build whose features this JavaScript engine lacks (relaxed SIMD on Node 20, V8 11.3) cannot
// run here: its tests are skipped with the reason (skipBuild, unsupported). Lacking a feature is
// decided on a minimal module using only that feature, never on the build's own binary, so a
// broken binary fails its tests instead of skipping them.
import { readFile } from 'node:fs/promises';
import { it } from 'vitest';
import { instantiate } from '@assemblyscript/loader';
import { createEngine, Engine } from '../../src/engine.js';
import { BUILDS as BUILD_TABLE, BUILD_NAMES, type Build, type Feature } from '../../src/wasm/builds.js';
import { checkedKernels, type KernelExports } from '../../src/wasm/kernels.js';

export type BuildName = Build | 'debug';
/** Every build of the build table, then the debug build: the bodies that run on every build. */
export const BUILDS: readonly BuildName[] = [...BUILD_NAMES, 'debug'];

/** `(module (func (result v128) <v128.const 0> × arity <op>))`: a module whose only non-MVP instruction is `op`. */
function probe(arity: number, op: readonly number[]): Uint8Array<ArrayBuffer> {
  const zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)]; // v128.const 0
  const body = [0x00, ...Array.from({ length: arity }, () => zero).flat(), ...op, 0x0b];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // its code
  ]);
}
const FEATURE_PROBES: Record<Feature, Uint8Array<ArrayBuffer>> = {
  simd: probe(2, [0xfd, 0xe4, 0x01]), // f32x4.add
  'relaxed-simd': probe(3, [0xfd, 0x85, 0x02]), // f32x4.relaxed_madd
};

/**
 * Why `build` cannot run in this JavaScript engine, or null: the first of its features whose
 * minimal module WebAssembly.validate rejects.
 */
export function unsupported(build: BuildName): string | null {
  const features = build === 'debug' ? BUILD_TABLE.simd.features : BUILD_TABLE[build].features;
  const missing = features.find((f) => !WebAssembly.validate(FEATURE_PROBES[f]));
  if (missing === undefined) return null;
  const what = { simd: '128-bit SIMD', 'relaxed-simd': 'relaxed SIMD (Node 21+, V8 11.4+)' }[missing];
  return `the ${build} build needs ${what}: Node ${process.version} (V8 ${process.versions.v8}) rejects it (WebAssembly.validate)`;
}

/** The builds of `builds` that run here. */
export function runnable<B extends BuildName>(builds: readonly B[]): B[] {
  return builds.filter((b) => unsupported(b) === null);
}

/**
 * In a describe body for one build: when the build cannot run here, registers one test that is
 * skipped with the reason and returns true (the body then returns without its tests).
 */
export function skipBuild(build: BuildName): boolean {
  const why = unsupported(build);
  if (why === null) return false;
  it(`${build} build: skipped`, (ctx) => ctx.skip(why));
  return true;
}

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
