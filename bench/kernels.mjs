// `node bench/kernels.mjs [--all] [--build simd|scalar]` (part of `npm run bench`): every kernel
// of the registry (src/wasm/kernels.ts) timed alone on the bench's shapes (bench/shapes.mjs; the
// quick set unless --all), with arguments built from the registry's descriptions: a NCHW kernel
// on each NCHW case, a channels-last kernel on each NHWC or [N, C] case, a per-channel kernel on
// the case's C. Reported: median time of one call and GB/s of the bytes its pointer arguments
// declare (each read or written once), so a kernel's distance from a memory-bound pass shows.
// Writes bench/results/kernels.{json,md}.
import os from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createEngine } from '../dist/index.js';
import { KERNELS, KERNEL_NAMES, blocksNchw, blocksRows } from '../dist/wasm/kernels.js';
import { allCases } from './shapes.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({ options: { all: { type: 'boolean', default: false }, build: { type: 'string', default: 'simd' } } });
const BLOCK = 2048; // src/exec.ts STATS_BLOCK

const engine = await createEngine({ build: args.build, threads: 1 }); // kernels alone, on the calling thread
const cases = allCases().filter((c) => args.all || c.quick);

/** Scalar arguments of a kernel on one case (the names the registry uses). */
function scalars(spec, c) {
  const C = c.C, count = c.size / C;
  const nchw = c.layout === 'NCHW' && c.shape.length > 2;
  const inner = nchw ? c.size / (c.shape[0] * C) : 1, outer = nchw ? c.shape[0] : count;
  const blocks = spec.layout === 'channels-last' ? blocksRows(count, BLOCK) : blocksNchw(outer, inner, BLOCK);
  return {
    outer, C, inner, rows: count, block: BLOCK, b0: 0, b1: blocks, blocks,
    training: 1, xmu: 1, eps: 1e-5, lower: -Infinity, divisor: count, momentum: 0.1, n: count,
  };
}

function applies(spec, c) {
  const channelsLast = c.layout === 'NHWC' || c.shape.length === 2;
  return spec.layout === 'per-channel' || (spec.layout === 'channels-last') === channelsLast;
}

const rows = [];
for (const c of cases) {
  for (const name of KERNEL_NAMES) {
    const spec = KERNELS[name];
    if (!applies(spec, c)) continue;
    const v = scalars(spec, c);
    const ptrs = spec.args.filter((a) => a.kind === 'f32[]' || a.kind === 'f64[]');
    const sizes = ptrs.map((a) => a.length(v) * (a.kind === 'f32[]' ? 4 : 8));
    const at = sizes.map((b) => engine.arena.alloc(b));
    const heap = () => engine.arena.buffer;
    ptrs.forEach((a, i) => {
      const n = a.length(v);
      const view = a.kind === 'f32[]' ? new Float32Array(heap(), at[i], n) : new Float64Array(heap(), at[i], n);
      for (let j = 0; j < n; j++) view[j] = 0.5 + ((j * 2654435761) % 1000) / 500; // positive, varied
      if (a.name === 'partials') for (let j = 0; j < n; j += 4 * v.C) view.fill(BLOCK, j, j + v.C); // block counts
    });
    const call = spec.args.map((a) => (a.kind === 'f32[]' || a.kind === 'f64[]' ? at[ptrs.indexOf(a)] : v[a.name]));
    const fn = engine.kernels[name];
    const bytes = sizes.reduce((s, b) => s + b, 0);
    const reps = Math.max(1, Math.min(2000, Math.floor(2e7 / Math.max(bytes, 1))));
    for (let i = 0; i < reps; i++) fn(...call);
    const samples = [];
    for (let r = 0; r < 21; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) fn(...call);
      samples.push(Number(process.hrtime.bigint() - t0) / reps);
    }
    samples.sort((a, b) => a - b);
    const ns = samples[samples.length >> 1];
    rows.push({ case: c.id, kernel: name, ns, bytes, gbps: bytes / ns });
    at.forEach((p) => engine.arena.release(p));
  }
}

const lines = ['| case | kernel | median µs | GB/s (declared bytes) |', '|---|---|---:|---:|'];
for (const r of rows) lines.push(`| ${r.case} | ${r.kernel} | ${(r.ns / 1000).toFixed(2)} | ${r.gbps.toFixed(2)} |`);
const meta = { date: new Date().toISOString(), node: process.version, v8: process.versions.v8, cpu: os.cpus()[0]?.model, build: engine.build, block: BLOCK };
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/kernels.json'), `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
writeFileSync(join(root, 'bench/results/kernels.md'),
  `# Kernels alone (bench/kernels.mjs)\n\n${meta.cpu}, Node ${meta.node} (V8 ${meta.v8}), ${meta.build} build, ${meta.date}; one run.\n\n${lines.join('\n')}\n`);
console.log(lines.join('\n'));
