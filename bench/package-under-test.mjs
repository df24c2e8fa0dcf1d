// The package under test: dist/ with its build/*.wasm, or the snapshot of them that run.mjs
// takes at start (BENCH_PACKAGE_DIST = the snapshot's dist/index.js), so that a rebuild while the
// benchmark runs (the kernels are tuned in parallel) cannot mix two builds within one run.
// Environment-neutral: in a browser (bench/browser/, served from the repository's root) there is
// no process.env and dist/ is the URL ../dist/index.js next to bench/.
const snapshot = globalThis.process?.env?.BENCH_PACKAGE_DIST;
const target = snapshot
  ? (await import('node:url')).pathToFileURL(snapshot).href
  : new URL('../dist/index.js', import.meta.url).href;

export const pkg = await import(target);
export const { createEngine, oracleForward, oracleBackward } = pkg;
/** URL of another file of the same dist/ (e.g. 'tfjs/index.js', the wasm-batchnorm/tfjs entry). */
export const distUrl = (rel) => new URL(rel, target).href;
/**
 * The package's build table (dist/wasm/builds.js), most capable build first; a checkout from
 * before the table existed (--package) has the simd and scalar builds.
 */
export const BUILD_NAMES = await import(distUrl('wasm/builds.js')).then((m) => m.BUILD_NAMES, () => ['simd', 'scalar']);
