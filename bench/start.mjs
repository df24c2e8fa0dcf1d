// `npm start`: checks the engine against the float64 oracle and times it against plain JS on a
// ResNet-sized activation, 32x64x56x56 (NCHW) and the same tensor as 32x56x56x64 (NHWC).
// Built-in seeded data, node built-ins and dist/ only. Exit code 1 if a SIMD check fails.
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { createEngine, oracleForward, oracleBackward } from '../dist/index.js';
import { plainForwardTrain, plainForwardEval, plainBackwardTrain } from './plain-js.mjs';

const [N, C, H, W] = [32, 64, 56, 56];
const SIZE = N * C * H * W;
const HW = H * W;
const EPS = 1e-5;
const MOMENTUM = 0.1;
const WARMUP = 2;
const REPEATS = 7;
/** Tolerance: |err| <= TOL_ULP * (|expected| * 2^-23 + 2^-24), i.e. <= 8 ulp + 8 * 2^-24 absolute. */
const TOL_ULP = 8;

const LAYOUTS = [
  { layout: 'NCHW', shape: [N, C, H, W] },
  { layout: 'NHWC', shape: [N, H, W, C] },
];
/** Minimal memory traffic per element, in bytes. */
const OPS = [
  { key: 'eval', name: 'inference fwd', bytes: 8, traffic: 'read x + write y' },
  { key: 'train', name: 'training fwd', bytes: 12, traffic: 'read x twice (stats, apply) + write y' },
  { key: 'backward', name: 'backward', bytes: 20, traffic: 'read dy, read x twice + write dx' },
];

// ---------------------------------------------------------------------------------------------
// Deterministic data: mulberry32 uniforms, Box-Muller normals.

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normals(rand) {
  let spare = null;
  return () => {
    if (spare !== null) { const s = spare; spare = null; return s; }
    const r = Math.sqrt(-2 * Math.log(1 - rand())), a = 2 * Math.PI * rand();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
}

function makeData(seed) {
  const rand = mulberry32(seed);
  const gauss = normals(rand);
  const f32 = (f) => Float32Array.from({ length: C }, f);
  const mu = f32(() => 2 * rand() - 1); // per-channel mean in [-1, 1)
  const sd = f32(() => 0.5 + 1.5 * rand()); // per-channel std in [0.5, 2)
  const weight = f32(() => 0.5 + rand());
  const bias = f32(() => rand() - 0.5);
  const runningMean = f32((_, c) => mu[c] + 0.05 * sd[c] * gauss());
  const runningVar = f32((_, c) => sd[c] * sd[c] * (0.8 + 0.45 * rand()));
  const x = new Float32Array(SIZE);
  const dy = new Float32Array(SIZE);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * HW;
      for (let i = 0; i < HW; i++) x[base + i] = mu[c] + sd[c] * gauss();
    }
  }
  for (let i = 0; i < SIZE; i++) dy[i] = gauss();
  return { x, dy, weight, bias, runningMean, runningVar };
}

/** (N, C, HW) -> (N, HW, C). */
function toNHWC(a) {
  const out = new Float32Array(SIZE);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const src = (n * C + c) * HW, dst = n * HW * C + c;
      for (let i = 0; i < HW; i++) out[dst + i * C] = a[src + i];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Error measures.

const ULP = 2 ** -23, TINY = 2 ** -24;

/** Max |a - e| and max |a - e| / (|e| * 2^-23 + 2^-24) over all elements. */
function errors(actual, expected) {
  let abs = 0, ulp = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const d = Math.abs(actual[i] - e);
    if (!(d <= abs)) abs = d; // NaN sticks
    const u = d / (Math.abs(e) * ULP + TINY);
    if (!(u <= ulp)) ulp = u;
  }
  return { abs, ulp };
}

/** Worst ulp error over several per-channel [actual, expected] pairs. */
function channelUlp(pairs) {
  let worst = 0;
  for (const [a, e] of pairs) {
    const u = errors(a, e).ulp;
    if (!(u <= worst)) worst = u;
  }
  return worst;
}

function identical(a, b) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Timing.

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

// ---------------------------------------------------------------------------------------------
// Formatting.

const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
const fmtUlp = (u) => (Number.isNaN(u) ? 'NaN' : u < 100 ? u.toFixed(2) : u.toExponential(1));
const fmtExp = (v) => (Number.isNaN(v) ? 'NaN' : v.toExponential(2));

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = performance.now();
  const simd = await createEngine({ simd: true });
  const scalar = await createEngine({ simd: false });
  if (simd.build !== 'simd' || scalar.build !== 'scalar') throw new Error('unexpected engine builds');

  const cpu = os.cpus();
  console.log(`wasm-batchnorm: correctness and throughput on x = ${N}x${C}x${H}x${W} (NCHW) / ${N}x${H}x${W}x${C} (NHWC), `
    + `${SIZE.toLocaleString('en-US')} float32 values, seeded pseudo-random data`);
  console.log(`machine: ${cpu[0]?.model?.trim() ?? 'unknown CPU'}, ${cpu.length} logical cores | node ${process.version} | V8 ${process.versions.v8}`);
  console.log(`engines: SIMD build (zero-copy: engine.tensor() views; copy path: plain Float32Arrays), scalar build (zero-copy); `
    + `baseline: bench/plain-js.mjs`);

  const base = makeData(12345);
  // Zero-copy tensors in each engine's memory, allocated once and refilled per layout.
  const tensors = (engine) => ({ x: engine.tensor(SIZE), y: engine.tensor(SIZE), dy: engine.tensor(SIZE), dx: engine.tensor(SIZE) });
  const S = tensors(simd), Z = tensors(scalar);
  const yJs = new Float32Array(SIZE), dxJs = new Float32Array(SIZE);
  const { weight, bias } = base;
  const check = [], speed = [];
  let failed = false;

  for (const { layout, shape } of LAYOUTS) {
    const x = layout === 'NCHW' ? base.x : toNHWC(base.x);
    const dy = layout === 'NCHW' ? base.dy : toNHWC(base.dy);
    for (const T of [S, Z]) { T.x.set(x); T.dy.set(dy); }
    const fresh = () => ({ rm: base.runningMean.slice(), rv: base.runningVar.slice() });
    // Read tensor.data at every call: any allocation (e.g. the copy path's scratch) may grow
    // wasm memory, which detaches earlier views.
    const variants = {
      eval: {
        simd: (st) => simd.forward(S.x.data, shape, { layout, training: false, weight, bias, runningMean: st.rm, runningVar: st.rv, eps: EPS, out: S.y.data }).y,
        copy: (st) => simd.forward(x, shape, { layout, training: false, weight, bias, runningMean: st.rm, runningVar: st.rv, eps: EPS, out: yJs }).y,
        scalar: (st) => scalar.forward(Z.x.data, shape, { layout, training: false, weight, bias, runningMean: st.rm, runningVar: st.rv, eps: EPS, out: Z.y.data }).y,
        js: (st) => plainForwardEval(x, shape, layout, weight, bias, st.rm, st.rv, EPS, yJs),
      },
      train: {
        simd: (st) => simd.forward(S.x.data, shape, { layout, training: true, weight, bias, runningMean: st.rm, runningVar: st.rv, momentum: MOMENTUM, eps: EPS, out: S.y.data }),
        copy: (st) => simd.forward(x, shape, { layout, training: true, weight, bias, runningMean: st.rm, runningVar: st.rv, momentum: MOMENTUM, eps: EPS, out: yJs }),
        scalar: (st) => scalar.forward(Z.x.data, shape, { layout, training: true, weight, bias, runningMean: st.rm, runningVar: st.rv, momentum: MOMENTUM, eps: EPS, out: Z.y.data }),
        js: (st) => plainForwardTrain(x, shape, layout, weight, bias, st.rm, st.rv, MOMENTUM, EPS, yJs),
      },
      backward: {
        simd: (st) => simd.backward(S.dy.data, S.x.data, shape, { layout, training: true, weight, saveMean: st.saveMean, saveInvStd: st.saveInvStd, out: S.dx.data }),
        copy: (st) => simd.backward(dy, x, shape, { layout, training: true, weight, saveMean: st.saveMean, saveInvStd: st.saveInvStd, out: dxJs }),
        scalar: (st) => scalar.backward(Z.dy.data, Z.x.data, shape, { layout, training: true, weight, saveMean: st.saveMean, saveInvStd: st.saveInvStd, out: Z.dx.data }),
        js: (st) => ({ dx: dxJs, ...plainBackwardTrain(dy, x, shape, layout, weight, st.saveMean, st.saveInvStd, dxJs) }),
      },
    };
    let saved = null; // saveMean / saveInvStd of the SIMD training forward, input of every backward

    for (const op of OPS) {
      const v = variants[op.key];
      // --- correctness: one call of each variant with fresh state against the float64 oracle.
      const t0 = performance.now();
      const tensorErr = {}, chanUlp = {};
      let sameCopy = false; // copy-path output bit-equal to the zero-copy one (compared right after the call)
      if (op.key === 'eval') {
        const ref = oracleForward(x, shape, { layout, training: false, weight, bias, runningMean: base.runningMean, runningVar: base.runningVar, eps: EPS });
        for (const name of ['simd', 'copy', 'scalar', 'js']) {
          const y = v[name](fresh());
          tensorErr[name] = errors(y, ref.y);
          chanUlp[name] = null;
          if (name === 'copy') sameCopy = identical(y, S.y.data);
        }
      } else if (op.key === 'train') {
        const ref = oracleForward(x, shape, { layout, training: true, weight, bias, runningMean: base.runningMean, runningVar: base.runningVar, momentum: MOMENTUM, eps: EPS });
        for (const name of ['simd', 'copy', 'scalar', 'js']) {
          const st = fresh();
          const r = v[name](st);
          tensorErr[name] = errors(r.y, ref.y);
          chanUlp[name] = channelUlp([[r.saveMean, ref.mean], [r.saveInvStd, ref.invStd], [st.rm, ref.runningMean], [st.rv, ref.runningVar]]);
          if (name === 'simd') saved = { saveMean: r.saveMean, saveInvStd: r.saveInvStd };
          if (name === 'copy') sameCopy = identical(r.y, S.y.data);
        }
      } else {
        const ref = oracleBackward(dy, x, shape, { layout, training: true, weight, mean: saved.saveMean, invStd: saved.saveInvStd });
        for (const name of ['simd', 'copy', 'scalar', 'js']) {
          const r = v[name](saved);
          tensorErr[name] = errors(r.dx, ref.dx);
          chanUlp[name] = channelUlp([[r.dweight, ref.dweight], [r.dbias, ref.dbias]]);
          if (name === 'copy') sameCopy = identical(r.dx, S.dx.data);
        }
      }
      const worst = (name) => Math.max(tensorErr[name].ulp, chanUlp[name] ?? 0);
      const pass = [worst('simd'), worst('copy')].every((u) => u <= TOL_ULP); // NaN fails
      if (!pass) failed = true;
      check.push({ layout, op, tensorErr, chanUlp, sameCopy, pass, seconds: (performance.now() - t0) / 1000 });

      // --- timing: state that persists across runs (running stats drift, which is harmless).
      const st = { ...fresh(), ...(saved ?? {}) };
      const ms = {};
      for (const name of ['simd', 'copy', 'scalar', 'js']) ms[name] = timeMs(() => v[name](st));
      speed.push({ layout, op, ms });
    }
  }

  // ------------------------------------------------------------------------------------------
  console.log(`\nCorrectness vs float64 oracle (full tensor, every element; ulp = |err| / (|expected|*2^-23 + 2^-24);`);
  console.log(`PASS: SIMD zero-copy and copy path within ${TOL_ULP} ulp, i.e. |err| <= ${TOL_ULP} ulp + ${TOL_ULP}*2^-24 absolute)`);
  console.log(`per-channel outputs: training fwd = saveMean, saveInvStd, runningMean, runningVar (unbiased); backward = dweight, dbias`);
  const h1 = `${pad('layout', 7)}${pad('op', 14)}${pad('output', 7)}${lpad('SIMD max|err|', 14)}${lpad('SIMD ulp', 10)}`
    + `${lpad('per-ch ulp', 11)}${lpad('copy path', 11)}${lpad('scalar ulp', 12)}${lpad('plain JS ulp', 14)}${lpad('check', 7)}`;
  console.log(h1);
  console.log('-'.repeat(h1.length));
  for (const r of check) {
    const ch = (name) => (r.chanUlp[name] === null ? '-' : fmtUlp(r.chanUlp[name]));
    const other = (name) => `${fmtUlp(r.tensorErr[name].ulp)}${r.chanUlp[name] === null ? '' : `/${ch(name)}`}`;
    console.log(`${pad(r.layout, 7)}${pad(r.op.name, 14)}${pad(r.op.key === 'backward' ? 'dx' : 'y', 7)}`
      + `${lpad(fmtExp(r.tensorErr.simd.abs), 14)}${lpad(fmtUlp(r.tensorErr.simd.ulp), 10)}${lpad(ch('simd'), 11)}`
      + `${lpad(r.sameCopy ? 'identical' : fmtUlp(Math.max(r.tensorErr.copy.ulp, r.chanUlp.copy ?? 0)), 11)}`
      + `${lpad(other('scalar'), 12)}${lpad(other('js'), 14)}${lpad(r.pass ? 'PASS' : 'FAIL', 7)}`);
  }
  console.log(`(scalar / plain JS columns: tensor ulp / per-channel ulp; "identical": copy path bit-equal to zero-copy)`);

  console.log(`\nThroughput in GB/s of minimal memory traffic (median of ${REPEATS} runs after ${WARMUP} warm-up runs, 1 thread):`);
  for (const op of OPS) console.log(`  ${pad(op.name, 14)} ${lpad(op.bytes, 2)} B/element = ${op.traffic} (${(op.bytes * SIZE / 1e6).toFixed(0)} MB)`);
  console.log(`  (the copy path is credited with the same bytes: its copies in and out of wasm memory are overhead)`);
  const h2 = `${pad('layout', 7)}${pad('op', 14)}${lpad('SIMD 0-copy', 12)}${lpad('SIMD copy', 11)}${lpad('scalar', 9)}`
    + `${lpad('plain JS', 10)}${lpad('SIMD vs JS', 12)}${lpad('SIMD ms', 9)}${lpad('JS ms', 8)}`;
  console.log(h2);
  console.log('-'.repeat(h2.length));
  for (const r of speed) {
    const gbs = (name) => (r.op.bytes * SIZE / (r.ms[name] / 1000) / 1e9).toFixed(2);
    console.log(`${pad(r.layout, 7)}${pad(r.op.name, 14)}${lpad(gbs('simd'), 12)}${lpad(gbs('copy'), 11)}${lpad(gbs('scalar'), 9)}`
      + `${lpad(gbs('js'), 10)}${lpad(`${(r.ms.js / r.ms.simd).toFixed(1)}x`, 12)}${lpad(r.ms.simd.toFixed(1), 9)}${lpad(r.ms.js.toFixed(0), 8)}`);
  }

  const total = (performance.now() - started) / 1000;
  console.log(`\n${failed ? 'FAIL: the SIMD engine is outside the tolerance' : 'PASS: all checks within tolerance'} (bench ran in ${total.toFixed(1)} s)`);
  if (failed) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
