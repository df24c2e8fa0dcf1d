// One SIMD and one scalar engine per process, shared by the contenders that need them.
import { createEngine } from '../package-under-test.mjs';

let simd = null, scalar = null;
export async function simdEngine() {
  simd ??= await createEngine({ simd: true, threads: 1 }); // single-threaded, as the peers: bench/threads.mjs measures threads
  if (simd.build !== 'simd') throw new Error('expected the SIMD build');
  return simd;
}
export async function scalarEngine() {
  scalar ??= await createEngine({ simd: false, threads: 1 });
  if (scalar.build !== 'scalar') throw new Error('expected the scalar build');
  return scalar;
}
