// `node bench/threads.mjs [--quick] [--threads 1,2,4] [--rounds 15]` (part of `npm run bench`):
// thread scaling of batch norm. For each case (the bench's shape set, bench/shapes.mjs, plus
// issue 13's 32×64×56×56 in both layouts) and op (inference, training forward, backward), one
// engine per thread count runs the same zero-copy call (every array in wasm memory, every output
// into a destination), the engines interleaved round by round so that the machine's noise hits them alike;
// each cell is the median over rounds of a batch's ms per call. Every threaded result is
// checked bit for bit against threads: 1. Writes bench/results/threads.{json,md}.
import os from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createEngine } from '../dist/index.js';
import { allCases } from './shapes.mjs';
import { mulberry32 } from './prng.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    threads: { type: 'string', default: '1,2,4' },
    rounds: { type: 'string' },
    filter: { type: 'string' },
  },
});
const THREADS = args.threads.split(',').map(Number);
const ROUNDS = Number(args.rounds ?? (args.quick ? 7 : 15));
const OPS = ['inference', 'training', 'backward'];

const extra = ['NCHW', 'NHWC'].map((layout) => ({
  id: `32x64x56x56 ${layout}`, dims: [32, 64, 56, 56], layout, shape: layout === 'NCHW' ? [32, 64, 56, 56] : [32, 56, 56, 64],
  size: 32 * 64 * 56 * 56, C: 64, quick: true,
}));
let cases = [...extra, ...allCases()].filter((c) => !args.quick || c.quick);
if (args.filter) cases = cases.filter((c) => args.filter.split(',').some((t) => c.id.toLowerCase().includes(t.toLowerCase())));

const engines = [];
for (const T of THREADS) {
  const engine = await createEngine({ build: 'simd', threads: T });
  const running = await engine.startThreads();
  if (running !== T) throw new Error(`threads ${T}: ${running} running (${engine.info().threads.reason})`);
  engines.push(engine);
}

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  return s[s.length >> 1];
}

/**
 * One zero-copy call per op on one engine's tensors (every array resident, every output with a
 * destination, as bench/contenders/ours.mjs); returns the calls and the outputs to compare.
 */
function setup(engine, c) {
  const r = mulberry32(7), n = c.size, C = c.C;
  const x = engine.tensor(n), dy = engine.tensor(n), y = engine.tensor(n), dx = engine.tensor(n);
  const rm = engine.tensor(new Float32Array(C).fill(0.1)), rv = engine.tensor(new Float32Array(C).fill(1.5));
  const saveMean = engine.tensor(C), saveInvStd = engine.tensor(C); // the training forward's, read by the backward
  const mean = engine.tensor(C), invStd = engine.tensor(C), dweight = engine.tensor(C), dbias = engine.tensor(C);
  const all = [x, dy, y, dx, rm, rv, saveMean, saveInvStd, mean, invStd, dweight, dbias];
  const xd = x.data, dyd = dy.data;
  for (let i = 0; i < n; i++) { xd[i] = r() * 4 - 1; dyd[i] = r() - 0.5; }
  const { layout } = c;
  engine.forward(x.data, c.shape, { layout, training: true, saveMeanOut: saveMean.data, saveInvStdOut: saveInvStd.data });
  const calls = {
    inference: () => engine.forward(x.data, c.shape, {
      layout, training: false, runningMean: rm.data, runningVar: rv.data, out: y.data, saveMeanOut: mean.data, saveInvStdOut: invStd.data,
    }),
    training: () => engine.forward(x.data, c.shape, { layout, training: true, out: y.data, saveMeanOut: mean.data, saveInvStdOut: invStd.data }),
    backward: () => engine.backward(dy.data, x.data, c.shape, {
      layout, training: true, saveMean: saveMean.data, saveInvStd: saveInvStd.data, out: dx.data, dweightOut: dweight.data, dbiasOut: dbias.data,
    }),
  };
  return { calls, outputs: () => [y, dx, mean, invStd, dweight, dbias].map((t) => t.toArray()), free: () => all.forEach((t) => t.free()) };
}

const sameBits = (a, b) => a.length === b.length && new Uint32Array(a.buffer).every((v, i) => v === new Uint32Array(b.buffer)[i]);

const rows = [];
for (const c of cases) {
  const sets = engines.map((e) => setup(e, c));
  for (const op of OPS) {
    // A batch lasts about 20 ms on one thread.
    const t0 = performance.now();
    sets[0].calls[op]();
    const reps = Math.max(1, Math.min(200, Math.round(20 / Math.max(performance.now() - t0, 0.01))));
    const samples = sets.map(() => []);
    for (const s of sets) s.calls[op]();
    for (let round = 0; round < ROUNDS; round++) {
      sets.forEach((s, j) => {
        const t = performance.now();
        for (let i = 0; i < reps; i++) s.calls[op]();
        samples[j].push((performance.now() - t) / reps);
      });
    }
    const ms = samples.map(median);
    const ref = sets[0].outputs();
    const identical = sets.slice(1).every((s) => s.outputs().every((o, i) => sameBits(o, ref[i])));
    rows.push({ case: c.id, op, ms, speedup: ms.map((m) => ms[0] / m), identical });
    console.log(`${c.id.padEnd(22)} ${op.padEnd(9)} ${ms.map((m) => m.toFixed(3).padStart(8)).join(' ')} ms  `
      + `${ms.slice(1).map((m) => `${(ms[0] / m).toFixed(2)}x`).join(' ')}${identical ? '' : '  RESULTS DIFFER'}`);
  }
  for (const s of sets) s.free();
}
for (const e of engines) e.dispose();

const out = join(root, 'bench', 'results');
mkdirSync(out, { recursive: true });
const meta = { date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, threads: THREADS, rounds: ROUNDS };
writeFileSync(join(out, 'threads.json'), JSON.stringify({ meta, rows }, null, 2));
const head = `| case | op | ${THREADS.map((T) => `${T} thread${T > 1 ? 's' : ''} ms`).join(' | ')} | ${THREADS.slice(1).map((T) => `×${T}`).join(' | ')} | same bits |`;
const md = [
  `Thread scaling (${meta.node}, ${meta.cpus} logical cores, ${meta.cpu}; medians of ${ROUNDS} interleaved rounds; zero-copy, outputs in place; × = speed-up over 1 thread)`,
  '', head, `|${'---|'.repeat(3 + 2 * THREADS.length - 1)}`,
  ...rows.map((r) => `| ${r.case} | ${r.op} | ${r.ms.map((m) => m.toFixed(3)).join(' | ')} | ${r.speedup.slice(1).map((s) => s.toFixed(2)).join(' | ')} | ${r.identical ? 'yes' : '**no**'} |`),
  '',
].join('\n');
writeFileSync(join(out, 'threads.md'), md);
console.log(`\nwrote bench/results/threads.{json,md}`);
if (rows.some((r) => !r.identical)) process.exitCode = 1;
