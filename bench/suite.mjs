// One benchmark suite (= one operation) in one process, spawned by bench/run.mjs:
//   node --expose-gc bench/suite.mjs --op inference|training|backward [--quick] [--shapes a,b]
//        [--layout NCHW|NHWC] [--contenders id,id] [--out file.json]
// For every case: make the data, compute the float64 reference on a channel subset, set up every
// contender, call each once and check its output, warm it up, then time all of them side by
// side in one benny suite (benchmark.js underneath: median of its samples), tear down, next case.
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { selectCases } from './shapes.mjs';
import { caseData, compare } from './data.mjs';
import { engineFor, runnableBuilds } from './contenders/engines.mjs';
import { ensureBenchDeps } from './deps.mjs';

// The peers (benny, tfjs, onnxruntime) resolve from bench/node_modules: installed first if needed,
// then imported (a static import would fail at link time, before the install could run).
ensureBenchDeps();
const { default: b } = await import('benny');
const { CONTENDERS } = await import('./contenders/index.mjs');

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const OPS = ['inference', 'training', 'backward'];

const { values: args } = parseArgs({
  options: {
    op: { type: 'string' },
    quick: { type: 'boolean', default: false },
    shapes: { type: 'string' },
    layout: { type: 'string' },
    contenders: { type: 'string' },
    out: { type: 'string' },
    'max-time': { type: 'string' },
    'min-samples': { type: 'string' },
    'skip-above': { type: 'string' },
  },
});
if (!OPS.includes(args.op)) throw new Error(`--op must be one of ${OPS.join(', ')}`);
const op = args.op;

// Timing budget per (case, contender). benchmark.js keeps sampling until it has minSamples AND
// maxTime seconds have passed; each sample is one cycle of >= minTime seconds (many calls for
// small shapes, one call for big ones). Contenders slower than SLOW_CALL per call are warmed up
// by the checked call only (plus benny's own first call) and get SLOW_MIN_SAMPLES samples, so
// the big shapes fit the 10-minute budget.
const MAX_TIME = Number(args['max-time'] ?? (args.quick ? 0.08 : 0.15));
const MIN_SAMPLES = Number(args['min-samples'] ?? 5);
const MIN_TIME = 0.025;
const SLOW_CALL = 0.15;
const SLOW_MIN_SAMPLES = 3;
const WARMUP_SECONDS = 0.05;
// A contender whose call is predicted (from its median per value on the largest earlier case of
// the same layout with >= PREDICT_FROM values; cases run smallest first) to take longer than
// SKIP_ABOVE seconds is not run on that case: it would eat the time budget (tfjs's backward
// reaches ~15 s per call on the 25.7M-value shapes). Reported as "skipped" with the prediction.
const SKIP_ABOVE = Number(args['skip-above'] ?? (args.quick ? 1 : 2.5));
const PREDICT_FROM = 1_000_000;

const cases = selectCases({ quick: args.quick, filter: args.shapes ?? null, layout: args.layout ?? null })
  .sort((a, b) => a.size - b.size); // stable: NCHW before NHWC of the same shape
const wanted = args.contenders ? new Set(args.contenders.split(',').map((s) => s.trim())) : null;
const contenders = CONTENDERS.filter((m) => !wanted || wanted.has(m.id) || m.id === 'floor');

const gc = globalThis.gc ?? (() => {});
const seconds = (t0) => (performance.now() - t0) / 1000;
let peakRss = 0;
const sampleRss = () => { peakRss = Math.max(peakRss, process.memoryUsage().rss); };

async function timeCall(run) {
  const t0 = performance.now();
  await run();
  return seconds(t0);
}

 /** contender id + layout -> { size, secondsPerValue } of its largest timed case so far. */
const perValue = new Map();

const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));

async function runCase(c) {
  const tCase = performance.now();
  const { inputs, ref, saved } = caseData(c, op, await engineFor('simd'));
  const entries = [];
  const live = [];
  for (const m of contenders) {
    const entry = { id: m.id, label: m.label, status: 'ok' };
    entries.push(entry);
    const known = perValue.get(`${m.id} ${c.layout}`);
    if (known && known.size >= PREDICT_FROM && known.secondsPerValue * c.size > SKIP_ABOVE) {
      entry.status = 'skipped';
      entry.predictedMs = known.secondsPerValue * c.size * 1e3;
      entry.reason = `~${(known.secondsPerValue * c.size).toFixed(1)} s per call predicted from ${(known.size / 1e6).toFixed(1)}M values (budget: ${SKIP_ABOVE} s)`;
      console.log(`    ${m.id.padEnd(15)} skipped: ${entry.reason}`);
      continue;
    }
    try {
      const h = await m.setup({ c, op, inputs, saved, compareNaive: (out) => compare(c, ref, out) });
      if (h.unsupported) {
        entry.status = 'unsupported';
        entry.reason = h.unsupported;
        continue;
      }
      if (h.notes?.length) entry.notes = h.notes;
      if (h.info) entry.info = h.info;
      // First call: its output is checked (then discarded); it also starts the warm-up.
      const first = await timeCall(h.run);
      entry.firstCallMs = first * 1e3;
      if (first > 4 * SKIP_ABOVE) {
        // Far slower than predicted: keep the checked call as the (cold, single) measurement.
        Object.assign(entry, { medianMs: first * 1e3, samples: 1, coldOnly: true });
        perValue.set(`${m.id} ${c.layout}`, { size: c.size, secondsPerValue: first / c.size });
        entry.check = h.output ? compare(c, ref, h.output()) : null;
        await h.teardown?.();
        continue;
      }
      entry.check = h.output ? compare(c, ref, h.output()) : null;
      let calls = 1, spent = first, lastCall = first;
      while (lastCall < SLOW_CALL && (calls < 3 || spent < WARMUP_SECONDS)) {
        lastCall = await timeCall(h.run);
        spent += lastCall;
        calls++;
      }
      entry.warmupCalls = calls;
      entry.slow = lastCall >= SLOW_CALL;
      live.push({ m, h, entry });
      sampleRss();
    } catch (error) {
      entry.status = 'error';
      entry.reason = String(error?.message ?? error).split('\n')[0];
      console.error(`  ${m.id}: ${entry.reason}`);
    }
  }

  if (live.length) {
    const byId = new Map(live.map((l) => [l.m.id, l]));
    const slug = `${op}-${c.dims.join('x')}-${c.layout}`;
    // The floor is timed first and again last; its median is the lower of the two, so a burst
    // of load from other processes during one of them does not inflate every ratio of the case.
    const order = [...live];
    const floorLive = live.find((l) => l.m.id === 'floor');
    if (floorLive) order.push({ ...floorLive, again: true });
    const timings = new Map();
    await b.suite(
      `${op} ${c.id}`,
      ...order.map(({ m, h, entry, again }) => b.add(again ? `${m.id}#2` : m.id, h.run, {
        minSamples: entry.slow ? SLOW_MIN_SAMPLES : MIN_SAMPLES,
        maxTime: MAX_TIME,
        minTime: MIN_TIME,
        initCount: 1,
        delay: 0,
      })),
      b.cycle((result) => {
        const d = result.details;
        const t = {
          medianMs: d.median * 1e3, meanMs: d.mean * 1e3, minMs: d.min * 1e3, maxMs: d.max * 1e3,
          rme: d.relativeMarginOfError, samples: result.samples,
        };
        timings.set(result.name, t);
        const id = result.name.replace(/#2$/, '');
        const { entry } = byId.get(id);
        if (id === 'floor') {
          entry.runs = [...(entry.runs ?? []), t];
          Object.assign(entry, entry.runs.reduce((best, r) => (r.medianMs < best.medianMs ? r : best)));
        } else {
          Object.assign(entry, t);
        }
        const check = entry.check ? (entry.check.correct ? 'ok' : `WRONG ${entry.check.err.toExponential(1)}`) : '-';
        console.log(`    ${result.name.padEnd(15)} ${fmtMs(t.medianMs).padStart(8)} ms  ±${d.relativeMarginOfError.toFixed(1).padStart(4)}%  n=${String(result.samples).padEnd(3)} check ${check}`);
        return undefined; // no benny log-update output (the child's stdout is a log, not a TTY)
      }),
      b.complete(() => {}),
      b.save({ file: slug, folder: join(root, 'bench/results/tmp/benny'), format: 'json', details: true }),
    );
    sampleRss();
  }
  for (const { m, entry } of live) {
    if (entry.medianMs > 0) perValue.set(`${m.id} ${c.layout}`, { size: c.size, secondsPerValue: entry.medianMs / 1e3 / c.size });
  }
  for (const { h } of live) await h.teardown?.();
  gc();
  return {
    op, id: c.id, group: c.group, name: c.name, dims: c.dims, layout: c.layout, shape: c.shape, size: c.size, C: c.C,
    checkedChannels: ref.chans.length, seconds: seconds(tCase), contenders: entries,
  };
}

async function main() {
  const t0 = performance.now();
  console.log(`suite ${op}: ${cases.length} cases, contenders ${contenders.map((m) => m.id).join(', ')}`);
  const results = [];
  for (const [i, c] of cases.entries()) {
    console.log(`  [${i + 1}/${cases.length}] ${op} ${c.id} (${c.group} ${c.name}, ${(c.size / 1e6).toFixed(2)}M values)`);
    results.push(await runCase(c));
  }
  const engines = {};
  for (const build of await runnableBuilds()) engines[build] = (await engineFor(build)).info();
  const out = {
    op,
    seconds: seconds(t0),
    peakRssMB: Math.round(peakRss / 2 ** 20),
    pid: process.pid,
    node: process.version,
    v8: process.versions.v8,
    cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
    engines,
    results,
  };
  if (args.out) {
    mkdirSync(dirname(args.out), { recursive: true });
    writeFileSync(args.out, JSON.stringify(out, null, 1));
  }
  console.log(`suite ${op} done in ${out.seconds.toFixed(1)} s (peak RSS ${out.peakRssMB} MB)`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
