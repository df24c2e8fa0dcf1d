// One SIMD and one scalar engine per process, shared by the contenders that need them.
import { createEngine } from '../package-under-test.mjs';

let simd = null, scalar = null;
export async function simdEngine() {
  simd ??= await createEngine({ simd: true });
  if (simd.build !== 'simd') throw new Error('expected the SIMD build');
  return simd;
}
export async function scalarEngine() {
  scalar ??= await createEngine({ simd: false });
  if (scalar.build !== 'scalar') throw new Error('expected the scalar build');
  return scalar;
}
