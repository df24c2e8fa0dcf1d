// `node bench/kernels.mjs [--all] [--shapes a,b] [--builds simd,relaxed-simd]` (part of `npm run bench`): every
// kernel of the registry (src/wasm/kernels.ts) timed alone on the bench's shapes (bench/shapes.mjs;
// the quick set unless --all or --shapes, which filters as bench/run.mjs's does), with arguments built from the registry's descriptions: a NCHW
// kernel on each NCHW case, a channels-last kernel on each NHWC or [N, C] case, a per-channel
// kernel on the case's C. --builds: the builds of the build table to time (default: every SIMD
// build this JavaScript engine accepts), one engine each, their samples interleaved (one sample
// of each build in turn, so load from other processes falls on all alike). Reported per build:
// median time of one call and GB/s of the bytes its pointer arguments declare (each read or
// written once), so a kernel's distance from a memory-bound pass shows; with several builds, the
// first one's time over each other's. Writes bench/results/kernels.{json,md}.
import os from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { engineFor, unsupportedBuild } from './contenders/engines.mjs';
import { KERNELS, KERNEL_NAMES } from '../dist/wasm/kernels.js';
import { BLOCK, scalars, applies } from './kernel-args.mjs';
import { BUILDS, BUILD_NAMES } from '../dist/wasm/builds.js';
import { selectCases } from './shapes.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({ options: { all: { type: 'boolean', default: false }, shapes: { type: 'string' }, builds: { type: 'string' } } });

const wanted = args.builds ? args.builds.split(',').map((b) => b.trim()) : BUILD_NAMES.filter((b) => BUILDS[b].features.includes('simd')).reverse();
for (const b of wanted) if (!BUILD_NAMES.includes(b)) throw new Error(`--builds: unknown build ${b}; expected one of ${BUILD_NAMES.join(', ')}`);
const engines = [];
for (const build of wanted) {
  const why = await unsupportedBuild(build);
  if (why === null) engines.push(await engineFor(build));
  else console.warn(`${build}: left out, this JavaScript engine (Node ${process.version}) rejects it: ${why}`);
}
if (!engines.length) throw new Error(`none of ${wanted.join(', ')} runs here`);
const builds = engines.map((e) => e.build);
const cases = selectCases({ quick: !args.all && !args.shapes, filter: args.shapes ?? null });

const rows = [];
for (const c of cases) {
  for (const name of KERNEL_NAMES) {
    const spec = KERNELS[name];
    if (!applies(spec, c)) continue;
    const v = scalars(spec, c);
    const ptrs = spec.args.filter((a) => a.kind === 'f32[]' || a.kind === 'f64[]');
    const sizes = ptrs.map((a) => a.length(v) * (a.kind === 'f32[]' ? 4 : 8));
    const bytes = sizes.reduce((s, b) => s + b, 0);
    if (bytes > 2 ** 30) { // arguments sized for another geometry (e.g. per-(n, c) arrays of a big case)
      console.warn(`${c.id} ${name}: ${(bytes / 2 ** 30).toFixed(1)} GiB of declared arguments, left out`);
      continue;
    }
    const reps = Math.max(1, Math.min(2000, Math.floor(2e7 / Math.max(bytes, 1))));
    const calls = engines.map((engine) => {
      const at = sizes.map((b) => engine.arena.alloc(b));
      const heap = () => engine.arena.buffer;
      ptrs.forEach((a, i) => {
        const n = a.length(v);
        const view = a.kind === 'f32[]' ? new Float32Array(heap(), at[i], n) : new Float64Array(heap(), at[i], n);
        for (let j = 0; j < n; j++) view[j] = 0.5 + ((j * 2654435761) % 1000) / 500; // positive, varied
        if (a.name === 'partials') for (let j = 0; j < n; j += 4 * v.C) view.fill(BLOCK, j, j + v.C); // block counts
      });
      const argv = spec.args.map((a) => (a.kind === 'f32[]' || a.kind === 'f64[]' ? at[ptrs.indexOf(a)] : v[a.name]));
      const fn = engine.kernels[name];
      for (let i = 0; i < reps; i++) fn(...argv);
      return { engine, at, fn, argv, samples: [] };
    });
    for (let r = 0; r < 21; r++) {
      for (const k of r % 2 ? [...calls].reverse() : calls) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < reps; i++) k.fn(...k.argv);
        k.samples.push(Number(process.hrtime.bigint() - t0) / reps);
      }
    }
    const ns = calls.map((k) => k.samples.sort((a, b) => a - b)[k.samples.length >> 1]);
    rows.push({ case: c.id, kernel: name, bytes, ns: Object.fromEntries(builds.map((b, i) => [b, ns[i]])), gbps: Object.fromEntries(builds.map((b, i) => [b, bytes / ns[i]])) });
    for (const k of calls) k.at.forEach((p) => k.engine.arena.release(p));
  }
}

const others = builds.slice(1);
const lines = [
  `| case | kernel | ${builds.map((b) => `${b} µs | ${b} GB/s`).join(' | ')}${others.map((b) => ` | ${builds[0]} / ${b}`).join('')} |`,
  `|---|---|${builds.map(() => '---:|---:').join('|')}${others.map(() => '|---:').join('')}|`,
];
for (const r of rows) {
  const cells = builds.map((b) => `${(r.ns[b] / 1000).toFixed(2)} | ${r.gbps[b].toFixed(2)}`);
  lines.push(`| ${r.case} | ${r.kernel} | ${cells.join(' | ')}${others.map((b) => ` | ${(r.ns[builds[0]] / r.ns[b]).toFixed(2)}×`).join('')} |`);
}
const meta = { date: new Date().toISOString(), node: process.version, v8: process.versions.v8, cpu: os.cpus()[0]?.model, builds, block: BLOCK };
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/kernels.json'), `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
writeFileSync(join(root, 'bench/results/kernels.md'),
  `# Kernels alone (bench/kernels.mjs)\n\n${meta.cpu}, Node ${meta.node} (V8 ${meta.v8}), builds ${builds.join(', ')} (samples interleaved), ${meta.date}; one run.\n\n${lines.join('\n')}\n`);
console.log(lines.join('\n'));
