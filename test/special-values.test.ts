// Special values through the public API, on every build (SIMD, scalar, debug with assertions),
// both layouts, shapes that exercise the SIMD main loops, tails and NHWC periods.
//
// What is promised (and decided here):
// - NaN and ±Inf propagate as IEEE arithmetic does (as PyTorch does), channel by channel: a
//   non-finite value in channel 3 (in x, dy, weight, bias or the running statistics) changes
//   nothing in any other channel (bit-identical to the same call with channel 3 clean), and
//   channel 3 gets what naive float64 arithmetic gives: NaN where it gives NaN, the same
//   infinity where it gives one. (The oracle's compensated sums turn Σ of an infinity into NaN,
//   so the poisoned channels are judged against the naive IEEE reference below, not the oracle.)
// - A constant channel (variance 0) gives exactly y = beta, saveInvStd = f32(1/sqrt(eps)), as
//   the oracle does, for every eps the API accepts (>= 2^-126, the smallest normal float32).
// - Huge magnitudes: statistics accumulate in f64, so nothing overflows for |x| up to 1e30 (y,
//   saveMean, saveInvStd, the running mean, dx, dweight, dbias match the oracle within the usual
//   tolerances). The running variance is a float32 buffer: a batch variance beyond float32 (std >
//   1.8e19) is stored as Infinity, the float32 rounding of the oracle's value (PyTorch's float32
//   buffers do the same).
// - Up to |x| <= 2^127 (half the float32 range, so x − mean cannot overflow) with |gamma| >= 1,
//   y still matches the oracle. DOCUMENTED LIMIT beyond that: the apply runs in float32, and
//   x − mean of two values near ±3.4e38 with opposite signs overflows to ±Inf where the f64
//   oracle is finite; the statistics stay exact. The test pins this behaviour.
// - Denormals are not flushed (inputs and outputs keep their subnormal values), and the apply
//   resolves x − mean to the float32 subnormal spacing 2^-149 (the f32 pair carrying the mean
//   has that granularity), which the bound below adds to the oracle tolerance.
// - The builds agree: bit for bit wherever no reduction is involved (eval) and on subnormal data
//   (whose f64 sums are exact); in training on other data the f64 sums are taken in a different
//   order per build, so results agree in class (NaN / which infinity / finite) and within the
//   summation bounds that test/api.test.ts checks.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine.js';
import { oracleBackward, oracleForward } from '../src/oracle/batchnorm.js';
import { InvalidArgumentError } from '../src/errors.js';
import { BUILDS, makeEngine, runnable, skipBuild, type BuildName } from './helpers/engines.js';
import { channelOf as channelFn, channelIndices as indicesOf, expectClose, gauss, product, rng, U32, ulp32 } from './helpers/numeric.js';
import { tolDbias, tolDweight, tolDx, tolSaveInvStd, tolSaveMean, tolY, type BackwardFacts, type ChannelFacts } from './helpers/tolerance.js';

type Layout = 'NCHW' | 'NHWC';
const F32_MAX = 3.4028234663852886e38;
const TINY = 2 ** -149; // the smallest subnormal float32

function axisOf(shape: readonly number[], layout: Layout): number {
  return layout === 'NCHW' ? 1 : shape.length - 1;
}

// ---------------------------------------------------------------------------------------------
// Naive IEEE float64 reference (no compensation, so an infinity stays an infinity).
// ---------------------------------------------------------------------------------------------
interface RefForward { y: Float64Array; mean: Float64Array; invStd: Float64Array; runningMean: Float64Array | null; runningVar: Float64Array | null }

function ieeeForward(x: ArrayLike<number>, shape: number[], layout: Layout, o: {
  training: boolean; weight?: ArrayLike<number> | null; bias?: ArrayLike<number> | null;
  runningMean?: ArrayLike<number> | null; runningVar?: ArrayLike<number> | null; momentum?: number; eps?: number;
}): RefForward {
  const C = shape[axisOf(shape, layout)];
  const ch = channelFn(shape, layout);
  const n = product(shape) / C;
  const eps = o.eps ?? 1e-5, m = o.momentum ?? 0.1;
  const batch = o.training || !o.runningMean;
  const mean = new Float64Array(C), m2 = new Float64Array(C), invStd = new Float64Array(C);
  if (batch) {
    for (let i = 0; i < x.length; i++) mean[ch(i)] += x[i];
    for (let c = 0; c < C; c++) mean[c] /= n;
    for (let i = 0; i < x.length; i++) m2[ch(i)] += (x[i] - mean[ch(i)]) ** 2;
    for (let c = 0; c < C; c++) invStd[c] = 1 / Math.sqrt(m2[c] / n + eps);
  } else {
    for (let c = 0; c < C; c++) {
      mean[c] = o.runningMean![c];
      invStd[c] = 1 / Math.sqrt(o.runningVar![c] + eps);
    }
  }
  const y = Float64Array.from(x, (v, i) => (v - mean[ch(i)]) * invStd[ch(i)] * (o.weight?.[ch(i)] ?? 1) + (o.bias?.[ch(i)] ?? 0));
  let runningMean: Float64Array | null = null, runningVar: Float64Array | null = null;
  if (o.runningMean && o.runningVar) {
    runningMean = Float64Array.from(o.runningMean);
    runningVar = Float64Array.from(o.runningVar);
    if (o.training) {
      for (let c = 0; c < C; c++) {
        runningMean[c] = (1 - m) * runningMean[c] + m * mean[c];
        runningVar[c] = (1 - m) * runningVar[c] + m * (m2[c] / (n - 1));
      }
    }
  }
  return { y, mean, invStd, runningMean, runningVar };
}

function ieeeBackward(dy: ArrayLike<number>, x: ArrayLike<number>, shape: number[], layout: Layout, o: {
  training: boolean; weight?: ArrayLike<number> | null; mean: ArrayLike<number>; invStd: ArrayLike<number>;
}) {
  const C = shape[axisOf(shape, layout)];
  const ch = channelFn(shape, layout);
  const n = product(shape) / C;
  const dbias = new Float64Array(C), dweight = new Float64Array(C);
  for (let i = 0; i < x.length; i++) {
    const c = ch(i);
    dbias[c] += dy[i];
    dweight[c] += dy[i] * (x[i] - o.mean[c]) * o.invStd[c];
  }
  const dx = Float64Array.from(x, (v, i) => {
    const c = ch(i);
    const k = (o.weight?.[c] ?? 1) * o.invStd[c];
    if (!o.training) return k * dy[i];
    return k * (dy[i] - dbias[c] / n - ((v - o.mean[c]) * o.invStd[c] * dweight[c]) / n);
  });
  return { dx, dweight, dbias };
}

/** NaN where the reference is NaN, the same infinity where it is infinite, finite where it is finite. */
function expectSameClass(actual: number, expected: number, what: string): void {
  const ok = Number.isNaN(expected) ? Number.isNaN(actual)
    : !Number.isFinite(expected) ? actual === expected
      : Number.isFinite(actual);
  if (!ok) throw new Error(`${what}: expected ${expected} (class), got ${actual}`);
}

function expectBitEqual(a: ArrayLike<number>, b: ArrayLike<number>, idx: Iterable<number>, what: string): void {
  for (const i of idx) if (!Object.is(a[i], b[i])) throw new Error(`${what}[${i}]: ${a[i]} !== ${b[i]} (must be bit-identical)`);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// ---------------------------------------------------------------------------------------------
// Shapes: NCHW with inner 5 (SIMD + tail), 9 (8-unroll + tail), inner 1 ([N, C]: the channels-last
// kernels); NHWC with C = 6 (period 12), 7 (period 28), 8 (period 8).
// ---------------------------------------------------------------------------------------------
const SHAPES: ReadonlyArray<{ layout: Layout; shape: number[] }> = [
  { layout: 'NCHW', shape: [3, 6, 5] },
  { layout: 'NCHW', shape: [2, 5, 9, 1] },
  { layout: 'NCHW', shape: [4, 7] },
  { layout: 'NHWC', shape: [3, 5, 6] },
  { layout: 'NHWC', shape: [2, 3, 7] },
  { layout: 'NHWC', shape: [5, 8] },
];
const POISONED = 3;
const POISONS: ReadonlyArray<[string, number[]]> = [
  ['NaN', [NaN]], ['+Inf', [Infinity]], ['-Inf', [-Infinity]], ['+Inf and -Inf', [Infinity, -Infinity]], ['NaN and +Inf', [NaN, Infinity]],
];
type Where = 'first' | 'middle' | 'last';
const WHERE: readonly Where[] = ['first', 'middle', 'last']; // first: the channel's shift K; last: in a SIMD tail

function cleanData(shape: number[], layout: Layout, seed: number) {
  const next = rng(seed);
  const g = gauss(next);
  const C = shape[axisOf(shape, layout)];
  const ch = channelFn(shape, layout);
  const center = range(C).map(() => (next() - 0.5) * 6);
  const x = Float32Array.from({ length: product(shape) }, (_, i) => center[ch(i)] + g());
  const dy = Float32Array.from({ length: x.length }, () => g());
  const weight = Float32Array.from(range(C), () => 0.5 + next());
  const bias = Float32Array.from(range(C), () => next() - 0.5);
  const runningMean = Float32Array.from(center, (m) => m + next() - 0.5);
  const runningVar = Float32Array.from(range(C), () => 0.5 + next());
  return { C, x, dy, weight, bias, runningMean, runningVar };
}

/** Puts the poison values at the channel's first / middle / last positions. */
function poison(a: Float32Array, idx: number[], values: number[], where: Where): Float32Array {
  const p = a.slice();
  values.forEach((v, k) => {
    const at = where === 'first' ? k : where === 'last' ? idx.length - 1 - k : Math.floor(idx.length / 2) + k;
    p[idx[at]] = v;
  });
  return p;
}

type Mode = 'train' | 'eval' | 'eval-batch-stats';
const MODES: readonly Mode[] = ['train', 'eval', 'eval-batch-stats'];

describe.each(BUILDS)('special values, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  function forward(x: Float32Array, shape: number[], layout: Layout, mode: Mode, d: ReturnType<typeof cleanData>, over: Partial<Record<'weight' | 'bias' | 'runningMean' | 'runningVar', Float32Array>> = {}) {
    const running = mode !== 'eval-batch-stats';
    const rm = running ? (over.runningMean ?? d.runningMean).slice() : null;
    const rv = running ? (over.runningVar ?? d.runningVar).slice() : null;
    const opts = { layout, training: mode === 'train', weight: over.weight ?? d.weight, bias: over.bias ?? d.bias, runningMean: rm, runningVar: rv, momentum: 0.1, eps: 1e-5 };
    const r = engine.forward(x, shape, opts);
    return { ...r, rm, rv, opts };
  }

  it('NaN/±Inf in x stay in their channel (forward, every mode, position and layout)', () => {
    let checked = 0;
    for (const { layout, shape } of SHAPES) {
      const d = cleanData(shape, layout, shape.length * 100 + shape[1]);
      const idx = indicesOf(shape, layout, POISONED);
      const others = range(d.x.length).filter((i) => !idx.includes(i));
      const otherCh = range(d.C).filter((c) => c !== POISONED);
      for (const mode of MODES) {
        const clean = forward(d.x, shape, layout, mode, d);
        for (const [label, values] of POISONS) {
          for (const where of WHERE) {
            const what = `${layout} [${shape}] ${mode} ${label} at ${where}`;
            const x = poison(d.x, idx, values, where);
            const r = forward(x, shape, layout, mode, d);
            // Other channels: bit-identical to the clean call.
            expectBitEqual(r.y, clean.y, others, `y ${what}`);
            expectBitEqual(r.saveMean, clean.saveMean, otherCh, `saveMean ${what}`);
            expectBitEqual(r.saveInvStd, clean.saveInvStd, otherCh, `saveInvStd ${what}`);
            if (r.rm) expectBitEqual(r.rm, clean.rm!, otherCh, `runningMean ${what}`);
            if (r.rv) expectBitEqual(r.rv, clean.rv!, otherCh, `runningVar ${what}`);
            // The poisoned channel: as naive IEEE float64 arithmetic.
            const ref = ieeeForward(x, shape, layout, { ...r.opts, runningMean: mode === 'eval' ? d.runningMean : r.opts.runningMean && d.runningMean, runningVar: mode === 'eval-batch-stats' ? null : d.runningVar });
            for (const i of idx) expectSameClass(r.y[i], ref.y[i], `y[${i}] ${what}`);
            expectSameClass(r.saveMean[POISONED], ref.mean[POISONED], `saveMean ${what}`);
            expectSameClass(r.saveInvStd[POISONED], ref.invStd[POISONED], `saveInvStd ${what}`);
            if (r.rm) expectSameClass(r.rm[POISONED], ref.runningMean![POISONED], `runningMean ${what}`);
            if (r.rv) expectSameClass(r.rv[POISONED], ref.runningVar![POISONED], `runningVar ${what}`);
            if (mode === 'eval') {
              // Running statistics are constants: the finite values of channel 3 are unaffected too.
              expectBitEqual(r.y, clean.y, idx.filter((i) => Number.isFinite(x[i])), `y (finite x in channel 3) ${what}`);
            } else {
              for (const i of idx) expect(Number.isNaN(r.y[i]), `batch statistics of a non-finite channel are NaN: y[${i}] ${what}`).toBe(true);
            }
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(SHAPES.length * MODES.length * POISONS.length * WHERE.length);
  });

  it('non-finite weight, bias and running statistics stay in their channel', () => {
    const params: ReadonlyArray<['weight' | 'bias' | 'runningMean' | 'runningVar', number, Mode[]]> = [
      ['weight', NaN, ['train', 'eval']], ['bias', NaN, ['train', 'eval']], ['bias', Infinity, ['train', 'eval']], ['bias', -Infinity, ['eval']],
      ['runningMean', NaN, ['train', 'eval']], ['runningMean', Infinity, ['train', 'eval']], ['runningMean', -Infinity, ['eval']],
      ['runningVar', NaN, ['train', 'eval']], ['runningVar', Infinity, ['train', 'eval']], ['runningVar', -1, ['eval']], ['runningVar', -1e-5, ['eval']],
    ];
    for (const { layout, shape } of SHAPES) {
      const d = cleanData(shape, layout, 7 + shape[1]);
      const idx = indicesOf(shape, layout, POISONED);
      const others = range(d.x.length).filter((i) => !idx.includes(i));
      const otherCh = range(d.C).filter((c) => c !== POISONED);
      for (const [name, value, modes] of params) {
        for (const mode of modes) {
          const what = `${layout} [${shape}] ${mode} ${name}[3] = ${value}`;
          const clean = forward(d.x, shape, layout, mode, d);
          const bad = d[name].slice();
          bad[POISONED] = value;
          const r = forward(d.x, shape, layout, mode, d, { [name]: bad });
          expectBitEqual(r.y, clean.y, others, `y ${what}`);
          expectBitEqual(r.saveMean, clean.saveMean, otherCh, `saveMean ${what}`);
          expectBitEqual(r.saveInvStd, clean.saveInvStd, otherCh, `saveInvStd ${what}`);
          expectBitEqual(r.rm!, clean.rm!, otherCh, `runningMean ${what}`);
          expectBitEqual(r.rv!, clean.rv!, otherCh, `runningVar ${what}`);
          const ref = ieeeForward(d.x, shape, layout, { ...r.opts, weight: name === 'weight' ? bad : d.weight, bias: name === 'bias' ? bad : d.bias,
            runningMean: name === 'runningMean' ? bad : d.runningMean, runningVar: name === 'runningVar' ? bad : d.runningVar });
          for (const i of idx) expectSameClass(r.y[i], ref.y[i], `y[${i}] ${what}`);
          expectSameClass(r.saveMean[POISONED], ref.mean[POISONED], `saveMean ${what}`);
          expectSameClass(r.saveInvStd[POISONED], ref.invStd[POISONED], `saveInvStd ${what}`);
          expectSameClass(r.rm![POISONED], ref.runningMean![POISONED], `runningMean ${what}`);
          expectSameClass(r.rv![POISONED], ref.runningVar![POISONED], `runningVar ${what}`);
        }
      }
    }
  });

  it('eval with runningMean = ±Inf gives ∓Inf (IEEE x − Inf), not NaN', () => {
    for (const { layout, shape } of SHAPES) {
      const d = cleanData(shape, layout, 99);
      for (const inf of [Infinity, -Infinity]) {
        const rm = d.runningMean.slice();
        rm[POISONED] = inf;
        const r = engine.forward(d.x, shape, { layout, training: false, runningMean: rm, runningVar: d.runningVar, weight: d.weight, bias: d.bias });
        const o = oracleForward(d.x, shape, { layout, training: false, runningMean: rm, runningVar: d.runningVar, weight: d.weight, bias: d.bias });
        for (const i of indicesOf(shape, layout, POISONED)) {
          expect(o.y[i]).toBe(-inf); // weight > 0
          expect(r.y[i], `${layout} [${shape}] y[${i}]`).toBe(-inf);
        }
      }
    }
  });

  it('NaN/±Inf in dy or x stay in their channel (backward, training and eval)', () => {
    for (const { layout, shape } of SHAPES) {
      const d = cleanData(shape, layout, 31 + shape.length);
      const idx = indicesOf(shape, layout, POISONED);
      const others = range(d.x.length).filter((i) => !idx.includes(i));
      const otherCh = range(d.C).filter((c) => c !== POISONED);
      const f = engine.forward(d.x, shape, { layout, training: true });
      for (const training of [true, false]) {
        const opts = { layout, training, weight: d.weight, saveMean: f.saveMean, saveInvStd: f.saveInvStd };
        const clean = engine.backward(d.dy, d.x, shape, opts);
        for (const which of ['dy', 'x'] as const) {
          for (const [label, values] of POISONS) {
            for (const where of WHERE) {
              const what = `${layout} [${shape}] training ${training} ${label} in ${which} at ${where}`;
              const dy = which === 'dy' ? poison(d.dy, idx, values, where) : d.dy;
              const x = which === 'x' ? poison(d.x, idx, values, where) : d.x;
              const r = engine.backward(dy, x, shape, opts);
              expectBitEqual(r.dx, clean.dx, others, `dx ${what}`);
              expectBitEqual(r.dweight, clean.dweight, otherCh, `dweight ${what}`);
              expectBitEqual(r.dbias, clean.dbias, otherCh, `dbias ${what}`);
              const ref = ieeeBackward(dy, x, shape, layout, { training, weight: d.weight, mean: f.saveMean, invStd: f.saveInvStd });
              for (const i of idx) expectSameClass(r.dx[i], ref.dx[i], `dx[${i}] ${what}`);
              expectSameClass(r.dweight[POISONED], ref.dweight[POISONED], `dweight ${what}`);
              expectSameClass(r.dbias[POISONED], ref.dbias[POISONED], `dbias ${what}`);
            }
          }
        }
      }
    }
  });

  // -------------------------------------------------------------------------------------------
  // Constant channels
  // -------------------------------------------------------------------------------------------
  it('constant channels give exactly y = beta and saveInvStd = f32(1/sqrt(eps)), like the oracle, for every eps', () => {
    const constants = [0, -0, 1, -3.5, 1e-3, 1e30, -1e30, 3e38, 2 ** -149, -(2 ** -140)];
    const epsList = [1e-5, 1e-3, 0.5, 1e-12, 2 ** -126, 1e30];
    for (const { layout, shape } of SHAPES) {
      const C = shape[axisOf(shape, layout)];
      const ch = channelFn(shape, layout);
      const next = rng(5);
      for (const eps of epsList) {
        // Channel c holds constants[c % 10]; channel 1 is NOT constant (a control).
        const x = Float32Array.from({ length: product(shape) }, (_, i) => (ch(i) === 1 ? next() - 0.5 : constants[ch(i) % constants.length]));
        const weight = Float32Array.from(range(C), (c) => (c % 2 ? -1 : 1) * 10 ** (4 * next() - 2));
        const bias = Float32Array.from(range(C), (c) => (c === 2 ? -0 : next() - 0.5));
        const rm = new Float32Array(C).fill(0.25), rv = new Float32Array(C).fill(2);
        const r = engine.forward(x, shape, { layout, training: true, weight, bias, runningMean: rm, runningVar: rv, eps, momentum: 0.5 });
        const o = oracleForward(x, shape, { layout, training: true, weight, bias, runningMean: new Float32Array(C).fill(0.25), runningVar: new Float32Array(C).fill(2), eps, momentum: 0.5 });
        for (let i = 0; i < x.length; i++) {
          const c = ch(i);
          if (c === 1) continue;
          const what = `${layout} [${shape}] eps ${eps} c=${c} x=${x[i]}`;
          expect(r.y[i] === bias[c], `y = beta ${what}: ${r.y[i]}`).toBe(true);
          expect(Object.is(r.y[i], Math.fround(o.y[i])), `y (sign of zero too) = oracle ${what}: ${r.y[i]} vs ${o.y[i]}`).toBe(true);
        }
        for (let c = 0; c < C; c++) {
          if (c === 1) continue;
          expect(r.saveMean[c], `saveMean c=${c}`).toBe(constants[c % constants.length] === 0 ? 0 : Math.fround(constants[c % constants.length]));
          expect(r.saveInvStd[c], `saveInvStd c=${c} eps ${eps}`).toBe(Math.fround(1 / Math.sqrt(eps)));
          expect(r.saveInvStd[c]).toBe(Math.fround(o.invStd[c]));
          expect(rv[c], `runningVar c=${c}`).toBe(Math.fround(0.5 * 2)); // m2 = 0 exactly
          expect(rm[c], `runningMean c=${c}`).toBe(Math.fround(o.runningMean![c]));
        }
      }
    }
  });

  it('constant channels in backward: dweight = 0 exactly, dx = gamma·invStd·(dy − mean(dy)) within tolerance', () => {
    for (const { layout, shape } of SHAPES) {
      const C = shape[axisOf(shape, layout)];
      const ch = channelFn(shape, layout);
      const x = Float32Array.from({ length: product(shape) }, (_, i) => 1.5 + ch(i));
      const d = cleanData(shape, layout, 3);
      const f = engine.forward(x, shape, { layout, training: true, eps: 1e-3 });
      const b = engine.backward(d.dy, x, shape, { layout, training: true, weight: d.weight, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
      const o = oracleBackward(d.dy, x, shape, { layout, training: true, weight: d.weight, mean: f.saveMean, invStd: f.saveInvStd });
      for (let c = 0; c < C; c++) expect(b.dweight[c]).toBe(0);
      const n = x.length / C;
      for (let i = 0; i < x.length; i++) {
        const c = ch(i);
        const k3 = d.weight[c] * f.saveInvStd[c];
        expectClose(b.dx[i], o.dx[i], 8 * U32 * Math.abs(k3) * (Math.abs(d.dy[i]) + Math.abs(o.dbias[c] / n)) + ulp32(o.dx[i]), `dx[${i}] ${layout} [${shape}]`);
      }
    }
  });

  // -------------------------------------------------------------------------------------------
  // Huge magnitudes
  // -------------------------------------------------------------------------------------------
  function hugeData(shape: number[], layout: Layout, scale: number, seed: number, gammaMin = 0.25) {
    const next = rng(seed);
    const g = gauss(next);
    const C = shape[axisOf(shape, layout)];
    const ch = channelFn(shape, layout);
    // |mean|/std from 0 to 1e3, std from scale·1e-3 to scale
    const spread = range(C).map(() => scale * 10 ** (-3 * next()));
    const center = range(C).map((c) => (next() - 0.5) * 2 * spread[c] * 10 ** (3 * next()));
    const x = Float32Array.from({ length: product(shape) }, (_, i) => Math.max(-scale * 1e3, Math.min(scale * 1e3, center[ch(i)] + spread[ch(i)] * g())));
    const weight = Float32Array.from(range(C), () => (next() < 0.5 ? -1 : 1) * (gammaMin + 2 * next()));
    const bias = Float32Array.from(range(C), () => (next() - 0.5) * 4);
    const dy = Float32Array.from(x, () => g() * (next() < 0.5 ? 1 : scale));
    return { C, ch, x, weight, bias, dy };
  }

  function facts(x: Float32Array, ch: (i: number) => number, mean: Float64Array): ChannelFacts[] {
    const C = mean.length;
    const fs = range(C).map((c) => ({ n: x.length / C, mean: mean[c], m2: 0, maxDev: 0 }));
    for (let i = 0; i < x.length; i++) {
      const f = fs[ch(i)];
      const dv = x[i] - f.mean;
      f.m2 += dv * dv;
      f.maxDev = Math.max(f.maxDev, Math.abs(dv));
    }
    return fs;
  }

  for (const scale of [1e20, 1e30]) {
    it(`|x| up to ${scale * 1e3}: forward and backward match the oracle; nothing overflows but the float32 running variance`, () => {
      for (const { layout, shape } of SHAPES) {
        for (const seed of [1, 2, 3]) {
          const h = hugeData(shape, layout, scale, seed);
          const rm = new Float32Array(h.C), rv = new Float32Array(h.C).fill(1);
          const r = engine.forward(h.x, shape, { layout, training: true, weight: h.weight, bias: h.bias, runningMean: rm, runningVar: rv });
          const o = oracleForward(h.x, shape, { layout, training: true, weight: h.weight, bias: h.bias, runningMean: new Float32Array(h.C), runningVar: new Float32Array(h.C).fill(1) });
          const fs = facts(h.x, h.ch, o.mean);
          const what = `${layout} [${shape}] scale ${scale} seed ${seed}`;
          for (let i = 0; i < h.x.length; i++) {
            const c = h.ch(i);
            expectClose(r.y[i], o.y[i], tolY(o.y[i], h.weight[c], h.bias[c]), `y[${i}] ${what}`);
          }
          for (let c = 0; c < h.C; c++) {
            expectClose(r.saveMean[c], o.mean[c], tolSaveMean(fs[c]), `saveMean[${c}] ${what}`);
            expectClose(r.saveInvStd[c], o.invStd[c], tolSaveInvStd(o.invStd[c], fs[c], 1e-5), `saveInvStd[${c}] ${what}`);
            expectClose(rm[c], o.runningMean![c], ulp32(o.runningMean![c]) + 0.1 * tolSaveMean(fs[c]), `runningMean[${c}] ${what}`);
            const rvRef = o.runningVar![c];
            if (Math.abs(rvRef) > F32_MAX) expect(rv[c], `runningVar[${c}] overflows float32 like its rounding`).toBe(Math.fround(rvRef));
            else expectClose(rv[c], rvRef, 2 * ulp32(rvRef) + 1e-6 * Math.abs(rvRef), `runningVar[${c}] ${what}`);
          }
          // Backward in training and eval, dy of mixed magnitudes (1 and `scale`).
          for (const training of [true, false]) {
            const b = engine.backward(h.dy, h.x, shape, { layout, training, weight: h.weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd });
            const ob = oracleBackward(h.dy, h.x, shape, { layout, training, weight: h.weight, mean: r.saveMean, invStd: r.saveInvStd });
            const bf = backwardFacts(h, r.saveMean, r.saveInvStd, training);
            for (let i = 0; i < h.x.length; i++) {
              const c = h.ch(i);
              expectClose(b.dx[i], ob.dx[i], tolDx(h.dy[i], h.x[i] - r.saveMean[c], bf[c]), `dx[${i}] training ${training} ${what}`);
            }
            for (let c = 0; c < h.C; c++) {
              expectClose(b.dweight[c], ob.dweight[c], tolDweight(ob.dweight[c], bf[c]), `dweight[${c}] ${what}`);
              expectClose(b.dbias[c], ob.dbias[c], tolDbias(ob.dbias[c], bf[c]), `dbias[${c}] ${what}`);
            }
          }
          // Eval with those (float32) running statistics where they are finite.
          const finite = range(h.C).every((c) => Number.isFinite(rv[c]));
          if (finite) {
            const e = engine.forward(h.x, shape, { layout, training: false, weight: h.weight, bias: h.bias, runningMean: rm, runningVar: rv });
            const oe = oracleForward(h.x, shape, { layout, training: false, weight: h.weight, bias: h.bias, runningMean: rm, runningVar: rv });
            for (let i = 0; i < h.x.length; i++) expectClose(e.y[i], oe.y[i], tolY(oe.y[i], h.weight[h.ch(i)], h.bias[h.ch(i)]) + ulp32(oe.y[i]), `eval y[${i}] ${what}`);
          }
        }
      }
    });
  }

  function backwardFacts(h: ReturnType<typeof hugeData>, mean: Float32Array, invStd: Float32Array, training: boolean): BackwardFacts[] {
    const n = h.x.length / h.C;
    const s = range(h.C).map(() => ({ sumDy: 0, sumDyXmu: 0, sumAbsDy: 0, sumAbsDyXmu: 0 }));
    for (let i = 0; i < h.x.length; i++) {
      const c = h.ch(i);
      const t = h.dy[i] * (h.x[i] - mean[c]);
      s[c].sumDy += h.dy[i]; s[c].sumAbsDy += Math.abs(h.dy[i]);
      s[c].sumDyXmu += t; s[c].sumAbsDyXmu += Math.abs(t);
    }
    return s.map((v, c) => ({
      n, sumAbsDy: v.sumAbsDy, sumAbsDyXmu: v.sumAbsDyXmu, invStd: invStd[c],
      k1: training ? v.sumDy / n : 0, k2: training ? (v.sumDyXmu * invStd[c] * invStd[c]) / n : 0, k3: h.weight[c] * invStd[c],
    }));
  }

  it('|x| up to 2^127 (x − mean cannot overflow float32) with |gamma| >= 1: y matches the oracle, no Inf', () => {
    for (const { layout, shape } of SHAPES) {
      for (const seed of [4, 5, 6]) {
        const h = hugeData(shape, layout, 2 ** 127 / 1e3, seed, 1);
        for (let i = 0; i < h.x.length; i++) expect(Math.abs(h.x[i])).toBeLessThanOrEqual(2 ** 127);
        const r = engine.forward(h.x, shape, { layout, training: true, weight: h.weight, bias: h.bias });
        const o = oracleForward(h.x, shape, { layout, training: true, weight: h.weight, bias: h.bias });
        const fs = facts(h.x, h.ch, o.mean);
        for (let i = 0; i < h.x.length; i++) {
          const c = h.ch(i);
          expectClose(r.y[i], o.y[i], tolY(o.y[i], h.weight[c], h.bias[c]), `y[${i}] ${layout} [${shape}] seed ${seed}`);
        }
        for (let c = 0; c < h.C; c++) {
          expectClose(r.saveMean[c], o.mean[c], tolSaveMean(fs[c]), `saveMean[${c}]`);
          expectClose(r.saveInvStd[c], o.invStd[c], tolSaveInvStd(o.invStd[c], fs[c], 1e-5), `saveInvStd[${c}]`);
        }
      }
    }
  });

  it('DOCUMENTED LIMIT: x − mean beyond float32 (values near ±3.4e38 of both signs) overflows the float32 apply to ±Inf', () => {
    // One channel [3e38, 3e38, 3e38, −3e38]: mean 1.5e38, the last x − mean = −4.5e38 > FLT_MAX.
    const x = Float32Array.from([3e38, 3e38, 3e38, -3e38]);
    for (const layout of ['NCHW', 'NHWC'] as const) {
      const r = engine.forward(x, [4, 1], { layout, training: true });
      const o = oracleForward(x, [4, 1], { layout, training: true });
      expect(o.y[3]).toBeCloseTo(-Math.sqrt(3), 6); // the f64 oracle is finite
      expect(r.y[3]).toBe(-Infinity); // the float32 apply overflows: the documented limit
      for (let i = 0; i < 3; i++) expectClose(r.y[i], o.y[i], tolY(o.y[i], 1, 0), `y[${i}]`);
      // The statistics are exact (f64): only the apply is limited.
      expect(r.saveMean[0]).toBe(Math.fround(1.5e38));
      expectClose(r.saveInvStd[0], o.invStd[0], ulp32(o.invStd[0]), 'saveInvStd');
    }
    // Eval: x = 3e38 with runningMean = −3e38: x − mean = 6e38.
    const e = engine.forward(Float32Array.from([3e38, 1]), [2, 1], { training: false, runningMean: Float32Array.from([-3e38]), runningVar: Float32Array.from([1e30]) });
    expect(e.y[0]).toBe(Infinity);
    expectClose(e.y[1], 3e38 / 1e15, ulp32(3e23) * 4, 'y[1]');
  });

  // -------------------------------------------------------------------------------------------
  // Denormals
  // -------------------------------------------------------------------------------------------
  it('denormal inputs: not flushed, and within the oracle tolerance plus the 2^-149 resolution of x − mean', () => {
    for (const { layout, shape } of SHAPES) {
      const C = shape[axisOf(shape, layout)];
      const ch = channelFn(shape, layout);
      const next = rng(11);
      // Subnormal x (multiples of 2^-149 up to 2^-130), per-channel offsets; one channel of ±2^-149 only.
      const x = Float32Array.from({ length: product(shape) }, (_, i) => Math.round((next() - 0.3) * 2 ** (10 + ch(i) % 9)) * TINY);
      indicesOf(shape, layout, 0).forEach((i, k) => { x[i] = k % 2 ? TINY : -TINY; });
      const weight = Float32Array.from(range(C), () => 0.5 + next());
      const bias = Float32Array.from(range(C), (c) => (c % 2 ? 0 : 1e-40));
      for (const training of [true, false]) {
        const rm = Float32Array.from(range(C), () => Math.round(next() * 100) * TINY), rv = Float32Array.from(range(C), () => next() * 1e-39);
        const r = engine.forward(x, shape, { layout, training, weight, bias, runningMean: rm.slice(), runningVar: rv.slice() });
        const o = oracleForward(x, shape, { layout, training, weight, bias, runningMean: rm, runningVar: rv });
        for (let i = 0; i < x.length; i++) {
          const c = ch(i);
          const scale = Math.abs(weight[c] * o.invStd[c]);
          expectClose(r.y[i], o.y[i], tolY(o.y[i], weight[c], bias[c]) + scale * TINY, `y[${i}] ${layout} [${shape}] training ${training}`);
        }
        if (training) {
          // Channel 0 (±2^-149 alternating, bias 1e-40): y = bias ± 316·2^-149·gamma, never flushed to bias.
          for (const i of indicesOf(shape, layout, 0)) {
            expect(r.y[i] !== bias[0], `y[${i}] flushed: ${layout} [${shape}] x ${x[i]} y ${r.y[i]} mean ${r.saveMean[0]} invStd ${r.saveInvStd[0]}`).toBe(true);
            expect(Math.sign(r.y[i] - bias[0])).toBe(Math.sign(x[i]));
          }
          for (let c = 0; c < C; c++) expect(Math.abs(r.saveMean[c] - o.mean[c])).toBeLessThanOrEqual(TINY / 2);
        }
      }
    }
  });

  it('denormal outputs and gradients: not flushed, correctly rounded to the subnormal spacing', () => {
    for (const { layout, shape } of SHAPES) {
      const C = shape[axisOf(shape, layout)];
      const d = cleanData(shape, layout, 17);
      const ch = channelFn(shape, layout);
      const weight = Float32Array.from(range(C), (c) => (c % 2 ? -1 : 1) * 1e-40 * (1 + c)); // y = xhat·gamma: subnormal
      const r = engine.forward(d.x, shape, { layout, training: true, weight });
      const o = oracleForward(d.x, shape, { layout, training: true, weight });
      let subnormal = 0;
      for (let i = 0; i < d.x.length; i++) {
        // gamma·invStd is itself subnormal: rounded to 2^-149 absolute, scaled by |x − mean|; then y's own rounding.
        const tol = (Math.abs(d.x[i] - o.mean[ch(i)]) + 1) * TINY / 2 + 8 * U32 * Math.abs(o.y[i]);
        expectClose(r.y[i], o.y[i], tol, `y[${i}] ${layout} [${shape}]`);
        if (r.y[i] !== 0 && Math.abs(r.y[i]) < 2 ** -126) subnormal++;
      }
      expect(subnormal).toBeGreaterThan(d.x.length / 2);
      // Backward with subnormal dy: dbias = Σdy is exact (a sum of multiples of 2^-149).
      const dy = Float32Array.from(d.x, (_, i) => ((i * 7) % 11 - 5) * TINY);
      const b = engine.backward(dy, d.x, shape, { layout, training: true, saveMean: r.saveMean, saveInvStd: r.saveInvStd });
      const exact = new Float64Array(C);
      for (let i = 0; i < dy.length; i++) exact[ch(i)] += dy[i];
      for (let c = 0; c < C; c++) expect(b.dbias[c], `dbias[${c}]`).toBe(exact[c]);
      const ob = oracleBackward(dy, d.x, shape, { layout, training: true, mean: r.saveMean, invStd: r.saveInvStd });
      for (let i = 0; i < dy.length; i++) expectClose(b.dx[i], ob.dx[i], 8 * TINY + 8 * U32 * Math.abs(ob.dx[i]), `dx[${i}]`);
    }
  });
});

describe('the builds agree on special values', () => {
  // Elementwise work (eval forward, eval backward) is bit-identical across builds; reductions sum in
  // a different order per build (f64, within the summation bound; relaxed-simd's multiply-adds may
  // also round once where the others round twice), so training results agree in class (NaN /
  // which infinity / finite) and closely, and bit for bit when the sums are exact (all-subnormal
  // data: multiples of 2^-149, exact in f64, fused or not).
  function run(e: Engine, x: Float32Array, dy: Float32Array, shape: number[], layout: Layout, weight: Float32Array, training: boolean) {
    const C = weight.length;
    const rm = Float32Array.from(range(C), (c) => (c - 2) * 0.3), rv = Float32Array.from(range(C), (c) => 0.5 + c);
    const f = e.forward(x, shape, { layout, training, weight, runningMean: rm, runningVar: rv });
    const b = e.backward(dy, x, shape, { layout, training, weight, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
    return [f.y, f.saveMean, f.saveInvStd, rm, rv, b.dx, b.dweight, b.dbias];
  }
  const NAMES = ['y', 'saveMean', 'saveInvStd', 'runningMean', 'runningVar', 'dx', 'dweight', 'dbias'];
  const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

  it('every build (relaxed-simd where it runs, simd, scalar, debug): bit-identical in eval and on subnormal data, same NaN/Inf class in training', async () => {
    const builds = runnable(BUILDS);
    const engines = await Promise.all(builds.map((b) => makeEngine(b)));
    const specials = [NaN, Infinity, -Infinity, 0, -0, TINY, -TINY * 3, 1e-40, 3e38, -3e38, 1e30];
    for (const { layout, shape } of SHAPES) {
      const C = shape[axisOf(shape, layout)];
      const next = rng(23 + shape[1]);
      const pick = () => specials[Math.floor(next() * specials.length)];
      const x = Float32Array.from({ length: product(shape) }, () => (next() < 0.15 ? pick() : (next() - 0.5) * 10 ** (next() * 8 - 4)));
      // Training on values beyond the documented envelope (±3e38: x − mean overflows float32) is
      // rounding-order dependent even in class, so the training comparison leaves them out.
      const xIn = x.map((v) => (Math.abs(v) > 1e38 ? 1e30 : v));
      const dy = Float32Array.from(x, () => (next() < 0.1 ? pick() : next() - 0.5));
      const sub = Float32Array.from(x, () => Math.round((next() - 0.5) * 4000) * TINY);
      const dySub = Float32Array.from(x, () => Math.round((next() - 0.5) * 4000) * TINY);
      const weight = Float32Array.from(range(C), () => next() * 2 - 1);
      for (const [data, grad, training, exact] of [[x, dy, false, true], [xIn, dy, true, false], [sub, dySub, true, true], [sub, dySub, false, true]] as const) {
        const results = engines.map((e) => run(e, data, grad, shape, layout, weight, training));
        for (let k = 1; k < results.length; k++) {
          results[k].forEach((a, j) => {
            const ref = results[0][j];
            for (let i = 0; i < a.length; i++) {
              const what = `${builds[k]} vs ${builds[0]} ${NAMES[j]}[${i}] ${layout} [${shape}] training ${training}: ${a[i]} vs ${ref[i]}`;
              if (exact) {
                if (!same(a[i], ref[i])) throw new Error(`${what} (must be bit-identical)`);
              } else {
                expectSameClass(a[i], ref[i], what);
              }
            }
          });
        }
      }
    }
  });
});

describe('eps', () => {
  it('eps = 2^-126 (the smallest accepted) keeps constant channels exactly at beta even with |gamma| = 1e6; smaller eps is rejected', async () => {
    const engine = await makeEngine('simd');
    const x = Float32Array.from([2, 0, 2, 2 ** -149, 2, 0, 2, 2 ** -149]); // channel 0 constant, channel 1 subnormal
    const r = engine.forward(x, [4, 2], { training: true, eps: 2 ** -126, weight: Float32Array.from([1e6, 1]), bias: Float32Array.from([0.5, 0.5]) });
    for (const i of [0, 2, 4, 6]) expect(r.y[i]).toBe(0.5);
    for (const v of r.y) expect(Number.isFinite(v)).toBe(true);
    expect(() => engine.forward(x, [4, 2], { training: true, eps: 2 ** -127 })).toThrow(InvalidArgumentError);
  });
});
