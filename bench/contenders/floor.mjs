// The memory floor (bench/floor/floor.ts, compiled by bench/floor/build.mjs): one f32x4 loop
// per pass with one scale/shift for the whole tensor and exactly the operation's minimal
// traffic. Not batch norm, so it has no correctness check; every contender is reported as a
// ratio to it. Environment-neutral: `floorContender(loadBytes)` takes where the wasm comes from
// (Node: bench/results/tmp/floor.wasm from disk, `setup` below; the browser bench fetches it).
import { engineFor } from './engines.mjs';

export const id = 'floor';
export const label = 'floor (memory-traffic bound)';

/** Reads the compiled floor from disk (Node). */
async function readFloorWasm() {
  const [{ readFile }, { FLOOR_WASM }] = await Promise.all([import('node:fs/promises'), import('../floor/build.mjs')]);
  try {
    return await readFile(FLOOR_WASM);
  } catch {
    throw new Error(`${FLOOR_WASM} is missing: run node bench/floor/build.mjs (bench/run.mjs does it)`);
  }
}

/** The floor contender's setup, with the compiled floor from `loadBytes()` (bytes of floor.wasm). */
export function floorContender(loadBytes) {
  let kernels = null;
  async function load(engine) {
    if (kernels) return kernels;
    // The floor imports our SIMD engine's memory (see floor.ts): its loops stream engine tensors.
    const env = { memory: engine.kernels.memory, abort() { throw new Error('floor: abort'); } };
    const { instance } = await WebAssembly.instantiate(await loadBytes(), { env });
    kernels = instance.exports;
    return kernels;
  }

  return async function setup({ c, op, inputs }) {
    const engine = await engineFor('simd');
    const k = await load(engine);
    const n = c.size;
    // inference/training: x -> y; backward: dy, x -> dx.
    const held = op === 'backward'
      ? [engine.tensor(inputs.dy), engine.tensor(inputs.x), engine.tensor(n)]
      : [engine.tensor(inputs.x), engine.tensor(n)];
    const [p0, p1, p2] = held.map((t) => t.byteOffset);
    const a = 1.25, b = 0.5;
    const run = {
      inference: () => { k.inference(p0, p1, n, a, b); },
      training: () => { k.training(p0, p1, n, a, b); },
      backward: () => { k.backward(p0, p1, p2, n, a); },
    }[op];
    return { run, output: null, teardown() { for (const t of held) t.free(); } };
  };
}

export const setup = floorContender(readFloorWasm);
