// The package under test: dist/ with its build/*.wasm, or the snapshot of them that run.mjs
// takes at start (BENCH_PACKAGE_DIST = the snapshot's dist/index.js), so that a rebuild while the
// benchmark runs (the kernels are tuned in parallel) cannot mix two builds within one run.
import { pathToFileURL } from 'node:url';

const target = process.env.BENCH_PACKAGE_DIST
  ? pathToFileURL(process.env.BENCH_PACKAGE_DIST).href
  : new URL('../dist/index.js', import.meta.url).href;

export const pkg = await import(target);
export const { createEngine, oracleForward, oracleBackward } = pkg;
