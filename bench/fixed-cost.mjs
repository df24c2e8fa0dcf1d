// `node bench/fixed-cost.mjs` (part of `npm run bench`): the fixed cost of a repeated call.
// A zero-copy eval forward on 1×16×8×8 (in place, running statistics as plain arrays) with 0 to
// 10 000 other live tensors, against the same kernels called directly on the same pointers
// (widenF32 ×2, foldF32, normalizeNchwF32, narrowF64 ×2: what the call runs). The difference is
// what the call adds: reading and checking its arguments, the plan lookup, scratch, copies of the
// per-channel arrays and the result arrays. Also the training forward and the backward of the same
// shape (whole calls). Medians of interleaved batches; one run, this machine.
import os from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEngine } from '../dist/index.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const SHAPE = [1, 16, 8, 8], C = 16, SIZE = 1024;
const LIVE = [0, 100, 1000, 10000];
const BATCH = 2000, ROUNDS = 31;

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  return s[s.length >> 1];
}

/** ns per call of each function, batches interleaved round by round. */
function time(fns) {
  for (const f of fns) for (let i = 0; i < BATCH; i++) f(); // warm up
  const samples = fns.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    fns.forEach((f, j) => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) f();
      samples[j].push(Number(process.hrtime.bigint() - t0) / BATCH);
    });
  }
  return samples.map(median);
}

const engine = await createEngine({ threads: 1 }); // one thread, as every peer here: bench/threads.mjs measures threads
const k = engine.kernels, arena = engine.arena;
arena.release(arena.alloc(16 << 20)); // memory grown once up front: no view below is ever detached
const x = engine.tensor(Float32Array.from({ length: SIZE }, (_, i) => Math.sin(i)));
const dy = engine.tensor(Float32Array.from({ length: SIZE }, (_, i) => Math.cos(i)));
const runningMean = new Float32Array(C).fill(0.1), runningVar = new Float32Array(C).fill(2);
// The kernels alone, on scratch of the same layout as the call's.
const ws = arena.alloc(24 * C + 36 * C);
const stats = ws, params = ws + 24 * C;
new Float32Array(arena.buffer, params + 12 * C, C).fill(1); // gamma
new Float32Array(arena.buffer, params + 20 * C, C).set(runningMean);
new Float32Array(arena.buffer, params + 24 * C, C).set(runningVar);
const kernelsOnly = () => {
  k.widenF32(params + 20 * C, C, stats);
  k.widenF32(params + 24 * C, C, stats + 8 * C);
  k.foldF32(C, stats, stats + 8 * C, 1, 1e-5, params + 12 * C, params + 16 * C, params, params + 4 * C, params + 8 * C, stats + 16 * C);
  k.normalizeNchwF32(x.byteOffset, x.byteOffset, 1, C, 64, params, params + 4 * C, params + 8 * C, -Infinity);
  k.narrowF64(stats, C, params + 28 * C);
  k.narrowF64(stats + 16 * C, C, params + 32 * C);
};

const rows = [];
const others = [];
for (const live of LIVE) {
  while (others.length < live) others.push(engine.tensor(16));
  const data = x.data, grad = dy.data; // memory no longer grows from here: the views stay live
  const evalCall = () => engine.forward(data, SHAPE, { training: false, runningMean, runningVar, out: data });
  const trainCall = () => engine.forward(data, SHAPE, { training: true, out: data });
  const f = engine.forward(data, SHAPE, { training: true });
  const backCall = () => engine.backward(grad, data, SHAPE, { training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd, out: grad });
  const [kern, ev, tr, bw] = time([kernelsOnly, evalCall, trainCall, backCall]);
  rows.push({ live, kernelsNs: kern, evalNs: ev, fixedNs: ev - kern, trainNs: tr, backwardNs: bw });
  console.log(`live tensors ${String(live).padStart(5)}: kernels ${(kern / 1000).toFixed(2)} µs, eval call ${(ev / 1000).toFixed(2)} µs`
    + ` (fixed ${((ev - kern) / 1000).toFixed(2)} µs), training call ${(tr / 1000).toFixed(2)} µs, backward call ${(bw / 1000).toFixed(2)} µs`);
}

const out = {
  date: new Date().toISOString(), node: process.version, v8: process.versions.v8, cpu: os.cpus()[0]?.model, build: engine.build,
  shape: SHAPE, batch: BATCH, rounds: ROUNDS, rows,
};
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/fixed-cost.json'), `${JSON.stringify(out, null, 2)}\n`);
