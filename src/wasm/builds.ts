// The build table: every binary built from assembly/ (the asconfig.json targets the package
// ships), in the order createEngine prefers them. The loader, engine.info(), the tests and the
// bench enumerate it; a new build is one more entry here and one more asconfig.json target.
// Every build also has a threaded binary (`<name>-threads` in asconfig.json): the same source,
// compiled to import a shared memory, which the calling thread and the workers of
// src/threads/pool.ts all instantiate. The arithmetic is the same instructions, so a threaded
// engine's results are the bits of the single-threaded one.

export type Build = 'simd' | 'scalar';

/** WebAssembly features a build uses beyond the MVP. */
export type Feature = 'simd';

export interface BuildSpec {
  readonly name: Build;
  readonly features: readonly Feature[];
  /** What the module's simdEnabled() export returns (a check that a binary is the build it claims). */
  readonly simdFlag: 0 | 1;
  /** How messages name the build and what an engine needs to run it. */
  readonly title: string;
  readonly needs: string;
  /**
   * The build to try when the JavaScript engine rejects this one (`WebAssembly.validate` on the
   * binary itself); null: every engine accepts it.
   */
  readonly fallback: Build | null;
  /** The package's own file. A literal `new URL('…', import.meta.url)` per build: bundlers must see it. */
  readonly url: () => URL;
  /** The threaded binary (imports a shared `env.memory`), also a literal URL. */
  readonly threadsUrl: () => URL;
}

const simd: BuildSpec = {
  name: 'simd', features: ['simd'], simdFlag: 1, fallback: 'scalar', title: 'SIMD', needs: '128-bit SIMD',
  url: () => new URL('../../build/batchnorm.simd.wasm', import.meta.url),
  threadsUrl: () => new URL('../../build/batchnorm.simd.threads.wasm', import.meta.url),
};
const scalar: BuildSpec = {
  name: 'scalar', features: [], simdFlag: 0, fallback: null, title: 'scalar', needs: 'WebAssembly 1.0',
  url: () => new URL('../../build/batchnorm.scalar.wasm', import.meta.url),
  threadsUrl: () => new URL('../../build/batchnorm.scalar.threads.wasm', import.meta.url),
};

export const BUILDS: Readonly<Record<Build, BuildSpec>> = Object.freeze({ simd, scalar });

/** Every build, most capable first: the order createEngine tries them in. */
export const BUILD_NAMES: readonly Build[] = Object.freeze(['simd', 'scalar'] as const);
