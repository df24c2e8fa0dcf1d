// `npm start`, the main job: a short summary of `npm run bench` on one ResNet-sized activation,
// 32x64x56x56 (NCHW) and the same tensor as 32x56x56x64 (NHWC), for the three operations.
// It reuses the benchmark's own pieces: the seeded data (bench/data.mjs), the contenders (ours
// zero-copy, ours copy path, ours scalar, the plain JS loop) and the memory floor
// (bench/contenders). Each contender is first checked against the float64 oracle on the FULL
// tensor (every value; the benchmark checks a channel subset), then timed (median of REPEATS).
// Exit code 1 if a SIMD result is outside the tolerance.
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { oracleForward, oracleBackward } from './package-under-test.mjs';
import { makeInputs, EPS } from './data.mjs';
import { buildFloor } from './floor/build.mjs';
import * as floor from './contenders/floor.mjs';
import * as oursZeroCopy from './contenders/ours-zero-copy.mjs';
import * as oursCopy from './contenders/ours-copy.mjs';
import * as oursScalar from './contenders/ours-scalar.mjs';
import * as plainJs from './contenders/plain-js.mjs';
import { engineFor } from './contenders/engines.mjs';

const DIMS = [32, 64, 56, 56];
const SIZE = DIMS.reduce((a, b) => a * b);
const CASES = [
  { layout: 'NCHW', shape: DIMS },
  { layout: 'NHWC', shape: [DIMS[0], DIMS[2], DIMS[3], DIMS[1]] },
].map((c) => ({ ...c, id: `${DIMS.join('x')} ${c.layout}`, dims: DIMS, size: SIZE, C: DIMS[1] }));
const OPS = [
  { op: 'inference', bytes: 8, traffic: 'read x, write y' },
  { op: 'training', bytes: 12, traffic: 'read x twice (statistics, apply), write y' },
  { op: 'backward', bytes: 20, traffic: 'read dy and x twice, write dx' },
];
const CONTENDERS = [oursZeroCopy, oursCopy, oursScalar, plainJs];
const CHECKED = new Set(['ours-zero-copy', 'ours-copy']); // the SIMD build decides PASS/FAIL
const WARMUP = 2;
const REPEATS = 7;
/** |err| <= TOL_ULP·(|expected|·2^-23 + 2^-24): 8 ulp plus 8·2^-24 absolute. */
const TOL_ULP = 8;

/** Max over values of |a − e| / (|e|·2^-23 + 2^-24); NaN sticks. */
function ulpError(actual, expected) {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const u = Math.abs(actual[i] - expected[i]) / (Math.abs(expected[i]) * 2 ** -23 + 2 ** -24);
    if (!(u <= worst)) worst = u;
  }
  return worst;
}

/**
 * The float64 oracle on the whole tensor, keyed like the contenders' output(), and the saved
 * statistics every backward contender gets: the SIMD training forward's, as a user's would be.
 */
function expectedOf(engine, c, op, inputs) {
  const { layout, shape } = c;
  const common = { layout, weight: inputs.weight, bias: inputs.bias, eps: EPS };
  if (op === 'inference') {
    const r = oracleForward(inputs.x, shape, { ...common, training: false, runningMean: inputs.runningMean, runningVar: inputs.runningVar });
    return { expected: { main: r.y }, saved: null };
  }
  if (op === 'training') {
    const r = oracleForward(inputs.x, shape, { ...common, training: true });
    return { expected: { main: r.y, mean: r.mean, invStd: r.invStd }, saved: null };
  }
  const f = engine.forward(inputs.x, shape, { ...common, training: true });
  const b = oracleBackward(inputs.dy, inputs.x, shape, { layout, training: true, weight: inputs.weight, mean: f.saveMean, invStd: f.saveInvStd });
  return { expected: { main: b.dx, dweight: b.dweight, dbias: b.dbias }, saved: { saveMean: f.saveMean, saveInvStd: f.saveInvStd } };
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function timeMs(run) {
  for (let i = 0; i < WARMUP; i++) run();
  const times = [];
  for (let i = 0; i < REPEATS; i++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  return median(times);
}

const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
const fmtUlp = (u) => (Number.isNaN(u) ? 'NaN' : u < 100 ? u.toFixed(2) : u.toExponential(1));

async function main() {
  const started = performance.now();
  await buildFloor({ quiet: true });
  const engine = await engineFor('simd');
  const cpu = os.cpus();
  console.log(`wasm-batchnorm: ${DIMS.join('x')} (NCHW) and ${CASES[1].shape.join('x')} (NHWC), ${SIZE.toLocaleString('en-US')} float32 values, seeded data`);
  console.log(`machine: ${cpu[0]?.model?.trim() ?? 'unknown CPU'}, ${cpu.length} logical cores | node ${process.version} | V8 ${process.versions.v8} | build ${engine.info().build}`);
  console.log(`check: every value of y / dx and every per-channel output vs the float64 oracle, in ulp = |err| / (|expected|·2^-23 + 2^-24); PASS: SIMD within ${TOL_ULP}`);
  console.log(`GB/s: the operation's minimal traffic (${OPS.map((o) => `${o.op} ${o.bytes} B/value: ${o.traffic}`).join('; ')})`);
  console.log(`ratios: median time / the memory floor's (hand-written f32x4 loops moving exactly that traffic) in this run\n`);

  const head = `${pad('layout', 7)}${pad('operation', 11)}${lpad('floor ms', 9)}`
    + CONTENDERS.map((m) => lpad(m.id, 24)).join('') + `${lpad('SIMD vs JS', 12)}${lpad('check', 7)}`;
  console.log(head);
  console.log('-'.repeat(head.length));
  let failed = false;
  for (const c of CASES) {
    for (const { op, bytes } of OPS) {
      const inputs = makeInputs(c, op);
      const { expected, saved } = expectedOf(engine, c, op, inputs);
      const f = await floor.setup({ c, op, inputs });
      const floorMs = timeMs(f.run);
      f.teardown();
      const cells = [];
      const ms = {};
      let caseFailed = false;
      for (const m of CONTENDERS) {
        const h = await m.setup({ c, op, inputs, saved });
        h.run();
        const out = h.output();
        let ulp = ulpError(out.main, expected.main);
        for (const key of ['mean', 'invStd', 'dweight', 'dbias']) {
          if (out[key] && expected[key]) ulp = Math.max(ulp, ulpError(out[key], expected[key]));
        }
        if (CHECKED.has(m.id) && !(ulp <= TOL_ULP)) caseFailed = true;
        ms[m.id] = timeMs(h.run);
        h.teardown();
        const gbs = (bytes * SIZE) / (ms[m.id] / 1000) / 1e9;
        cells.push(lpad(`${gbs.toFixed(1)} GB/s ${(ms[m.id] / floorMs).toFixed(2)}x ${fmtUlp(ulp)}u`, 24));
      }
      failed ||= caseFailed;
      console.log(`${pad(c.layout, 7)}${pad(op, 11)}${lpad(floorMs.toFixed(2), 9)}${cells.join('')}`
        + `${lpad(`${(ms['plain-js'] / ms['ours-zero-copy']).toFixed(1)}x`, 12)}${lpad(caseFailed ? 'FAIL' : 'PASS', 7)}`);
    }
  }
  console.log(`\ncells: GB/s, time / floor, worst error vs the oracle in ulp (u). Full comparison with TensorFlow.js and ONNX Runtime: npm run bench`);
  console.log(`${failed ? 'FAIL: a SIMD result is outside the tolerance' : 'PASS: every SIMD result within tolerance'} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
  if (failed) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
