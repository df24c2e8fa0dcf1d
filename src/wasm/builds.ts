// The build table: every binary built from assembly/ (the asconfig.json targets the package
// ships), in the order createEngine prefers them. The loader, engine.info(), the tests and the
// bench enumerate it; a new build is one more entry here and one more asconfig.json target.
// Every build also has a threaded binary (`<name>-threads` in asconfig.json): the same source,
// compiled to import a shared memory, which the calling thread and the workers of
// src/threads/pool.ts all instantiate. The arithmetic is the same instructions, so a threaded
// engine's results are the bits of the single-threaded one.

export type Build = 'relaxed-simd' | 'simd' | 'scalar';

/** WebAssembly features a build uses beyond the MVP. */
export type Feature = 'simd' | 'relaxed-simd';

export interface BuildSpec {
  readonly name: Build;
  readonly features: readonly Feature[];
  /**
   * What the module's simdEnabled() export returns, 0 no SIMD, 1 SIMD, 2 SIMD and relaxed SIMD (a
   * check that a binary is the build it claims).
   */
  readonly simdFlag: 0 | 1 | 2;
  /** How messages name the build and what an engine needs to run it. */
  readonly title: string;
  readonly needs: string;
  /**
   * The build to try when the JavaScript engine rejects this one (`WebAssembly.validate` on the
   * binary itself); null: every engine accepts it.
   */
  readonly fallback: Build | null;
  /**
   * Whether createEngine() without `build` tries this build when `options.wasm` is given but does
   * not name it (then from the package's own file). False for builds added after `options.wasm`
   * existed: a caller that serves the wasm itself and lists the builds it serves is not sent to
   * fetch one more file (a CDN without it, a CSP that allows only the listed modules).
   */
  readonly triedUnlisted: boolean;
  /** The package's own file. A literal `new URL('…', import.meta.url)` per build: bundlers must see it. */
  readonly url: () => URL;
  /** The threaded binary (imports a shared `env.memory`), also a literal URL. */
  readonly threadsUrl: () => URL;
}

// relaxed-simd: the SIMD kernels with f64x2.relaxed_madd in the statistics and backward sums
// (assembly/simd.ts, maddF64x2): exact within the same bounds, not bit-identical to simd (the
// hardware decides whether a multiply-add rounds once or twice). Safari rejects the whole module.
const relaxedSimd: BuildSpec = {
  name: 'relaxed-simd', features: ['simd', 'relaxed-simd'], simdFlag: 2, fallback: 'simd', triedUnlisted: false,
  title: 'relaxed-SIMD', needs: 'relaxed SIMD (Chrome 114+, Firefox 145+, Node 21+)',
  url: () => new URL('../../build/batchnorm.relaxed-simd.wasm', import.meta.url),
  threadsUrl: () => new URL('../../build/batchnorm.relaxed-simd.threads.wasm', import.meta.url),
};
const simd: BuildSpec = {
  name: 'simd', features: ['simd'], simdFlag: 1, fallback: 'scalar', triedUnlisted: true, title: 'SIMD', needs: '128-bit SIMD',
  url: () => new URL('../../build/batchnorm.simd.wasm', import.meta.url),
  threadsUrl: () => new URL('../../build/batchnorm.simd.threads.wasm', import.meta.url),
};
const scalar: BuildSpec = {
  name: 'scalar', features: [], simdFlag: 0, fallback: null, triedUnlisted: true, title: 'scalar', needs: 'WebAssembly 1.0',
  url: () => new URL('../../build/batchnorm.scalar.wasm', import.meta.url),
  threadsUrl: () => new URL('../../build/batchnorm.scalar.threads.wasm', import.meta.url),
};

export const BUILDS: Readonly<Record<Build, BuildSpec>> = Object.freeze({ 'relaxed-simd': relaxedSimd, simd, scalar });

/** Every build, most capable first: the order createEngine tries them in. */
export const BUILD_NAMES: readonly Build[] = Object.freeze(['relaxed-simd', 'simd', 'scalar'] as const);
