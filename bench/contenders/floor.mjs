// The memory floor (bench/floor/floor.ts, compiled by bench/floor/build.mjs): one f32x4 loop
// per pass with one scale/shift for the whole tensor and exactly the operation's minimal
// traffic. Not batch norm, so it has no correctness check; every contender is reported as a
// ratio to it.
import { readFile } from 'node:fs/promises';
import { FLOOR_WASM } from '../floor/build.mjs';

export const id = 'floor';
export const label = 'floor (memory-traffic bound)';

let kernels = null;
async function load() {
  if (kernels) return kernels;
  let bytes;
  try {
    bytes = await readFile(FLOOR_WASM);
  } catch {
    throw new Error(`${FLOOR_WASM} is missing: run node bench/floor/build.mjs (bench/run.mjs does it)`);
  }
  const { instance } = await WebAssembly.instantiate(bytes, { env: { abort() { throw new Error('floor: abort'); } } });
  kernels = instance.exports;
  return kernels;
}

export async function setup({ c, op, inputs }) {
  const k = await load();
  const n = c.size, bytes = 4 * n;
  const align = (p) => Math.ceil(p / 64) * 64;
  // Bump allocation from the heap base for this case only; the memory grows as needed, never shrinks.
  const p0 = align(k.heapBase()), p1 = align(p0 + bytes), p2 = align(p1 + bytes), end = align(p2 + bytes);
  const have = k.memory.buffer.byteLength;
  if (end > have) k.memory.grow(Math.ceil((end - have) / 65536));
  const f32 = (p) => new Float32Array(k.memory.buffer, p, n);
  f32(p0).set(op === 'backward' ? inputs.dy : inputs.x);
  if (op === 'backward') f32(p1).set(inputs.x);
  const a = 1.25, b = 0.5;
  const run = {
    inference: () => { k.inference(p0, p1, n, a, b); },
    training: () => { k.training(p0, p1, n, a, b); },
    backward: () => { k.backward(p0, p1, p2, n, a); },
  }[op];
  return { run, output: null, teardown() {} };
}
