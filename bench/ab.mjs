// `node bench/ab.mjs [--builds simd,relaxed-simd] [--ops training,backward] [--layout NHWC]
//                    [--shapes a,b] [--quick] [--rounds 15] [--min-ms 20] [--out file.json]`
// An interleaved A/B of builds of the build table on the bench's cases (bench/shapes.mjs): one
// engine per build in this one process, the same inputs (zero-copy tensors, as the
// ours-zero-copy contender calls them), each result checked against the float64 oracle (as the
// suites do), then `rounds` rounds in which every build takes one sample in turn (the order
// reversed every other round). A sample is as many calls as last at least --min-ms. On a shared
// machine whose speed drifts by up to 2x from one minute to the next, the builds of one round
// ran within milliseconds of each other: the ratio of their samples is what the drift leaves
// alone. Reported per (op, case): the median ms per call of each build, and the median over the
// rounds of the first build's sample time over each other's (> 1: the other build is faster).
// Prints a markdown table; --out also writes the raw samples as JSON. Not part of `npm run bench`.
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { selectCases } from './shapes.mjs';
import { caseData, compare } from './data.mjs';
import { oursContender } from './contenders/ours.mjs';
import { engineFor, unsupportedBuild } from './contenders/engines.mjs';

const { values: args } = parseArgs({
  options: {
    builds: { type: 'string', default: 'simd,relaxed-simd' },
    ops: { type: 'string', default: 'training,backward' },
    layout: { type: 'string' },
    shapes: { type: 'string' },
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '15' },
    'min-ms': { type: 'string', default: '20' },
    out: { type: 'string' },
  },
});
const builds = args.builds.split(',').map((b) => b.trim());
const ops = args.ops.split(',').map((o) => o.trim());
const ROUNDS = Number(args.rounds), MIN_MS = Number(args['min-ms']);
for (const b of builds) {
  const why = await unsupportedBuild(b);
  if (why !== null) throw new Error(`${b}: ${why}`);
}
const cases = selectCases({ quick: args.quick, filter: args.shapes ?? null, layout: args.layout ?? null }).sort((a, b) => a.size - b.size);

/** A zero-copy contender of our engine on a given build (ours.mjs, with that build's engine). */
async function setupOn(build, ctx) {
  const engine = await engineFor(build);
  const mode = { simd: 'zero-copy', scalar: 'scalar', 'relaxed-simd': 'relaxed' }[build];
  if (mode === undefined) throw new Error(`no zero-copy contender for build ${build}`);
  const h = await oursContender(mode)(ctx);
  if (h.info.build !== engine.build) throw new Error(`${build}: the contender ran ${h.info.build}`);
  return h;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (ms) => (ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));

const results = [];
console.log(`A/B ${builds.join(' vs ')}: ${ops.join(', ')}; ${cases.length} cases; ${ROUNDS} rounds; Node ${process.version} (V8 ${process.versions.v8}), ${os.cpus()[0]?.model?.trim()}`);
for (const op of ops) {
  for (const c of cases) {
    const { inputs, ref, saved } = caseData(c, op, await engineFor('simd'));
    const hs = [];
    for (const b of builds) hs.push(await setupOn(b, { c, op, inputs, saved }));
    const checks = hs.map((h) => { h.run(); return compare(c, ref, h.output()); });
    checks.forEach((k, i) => { if (!k.correct) throw new Error(`${builds[i]} ${op} ${c.id}: relative error ${k.err} vs the oracle`); });
    // Calls per sample: enough for MIN_MS on the slowest build (after a warm-up of each).
    let perCall = 0;
    for (const h of hs) {
      const t0 = performance.now();
      let n = 0;
      do { h.run(); n++; } while (performance.now() - t0 < 50 || n < 3);
      perCall = Math.max(perCall, (performance.now() - t0) / n);
    }
    const calls = Math.max(1, Math.ceil(MIN_MS / perCall));
    const samples = builds.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? [...hs.keys()].reverse() : [...hs.keys()];
      for (const i of order) {
        const t0 = performance.now();
        for (let k = 0; k < calls; k++) hs[i].run();
        samples[i].push((performance.now() - t0) / calls);
      }
    }
    for (const h of hs) await h.teardown?.();
    const ms = samples.map(median);
    const ratios = builds.slice(1).map((_, j) => median(samples[0].map((t, r) => t / samples[j + 1][r])));
    const row = { op, case: c.id, size: c.size, calls, ms: Object.fromEntries(builds.map((b, i) => [b, ms[i]])), ratio: ratios, err: checks.map((k) => k.err), samples };
    results.push(row);
    console.log(`  ${op.padEnd(9)} ${c.id.padEnd(22)} ${builds.map((b, i) => `${b} ${fmt(ms[i])} ms`).join('  ')}  ${ratios.map((x) => `${x.toFixed(3)}×`).join(' ')}`);
  }
}

const others = builds.slice(1);
const lines = [
  `| op | case | ${builds.map((b) => `${b} ms`).join(' | ')} | ${others.map((b) => `${builds[0]} / ${b}`).join(' | ')} |`,
  `|---|---|${builds.map(() => '---:').join('|')}|${others.map(() => '---:').join('|')}|`,
  ...results.map((r) => `| ${r.op} | ${r.case} | ${builds.map((b) => fmt(r.ms[b])).join(' | ')} | ${r.ratio.map((x) => `${x.toFixed(2)}×`).join(' | ')} |`),
];
console.log(`\n${lines.join('\n')}`);
if (args.out) {
  mkdirSync(dirname(args.out), { recursive: true });
  const meta = { date: new Date().toISOString(), node: process.version, v8: process.versions.v8, cpu: os.cpus()[0]?.model?.trim(), loadavg: os.loadavg(), builds, rounds: ROUNDS, minMs: MIN_MS };
  writeFileSync(args.out, `${JSON.stringify({ meta, results }, null, 1)}\n`);
}
