// Accuracy on hard data: channels with |mean|/std = 1e4 over 2^20 values each, where the
// one-pass E[x²] − E[x]² in float32 is useless (checked below, so the data is known hard).
// Targets from the engine issue: saveMean within 2 ulp (f32) of the exact mean; batch variance
// within 1e-6 relative; y, dx, dweight, dbias within the derived tolerances of
// helpers/tolerance.ts. The largest error seen per category, relative to its bound, is printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine.js';
import { oracleBackward, oracleForward } from '../src/oracle/batchnorm.js';
import { BUILD_NAMES } from '../src/wasm/builds.js';
import { BUILDS, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { U32, gauss, rng, ulp32 } from './helpers/numeric.js';
import { tolDbias, tolDweight, tolDx, tolY } from './helpers/tolerance.js';

const N = 16, HW = 256 * 256, C = 2;
const CENTER = [1e4, -3e4], SPREAD = [1, 3];
const worst = new Map<string, number>();
function record(key: string, ratio: number): void {
  worst.set(key, Math.max(worst.get(key) ?? 0, ratio));
}

/** NCHW [16, 2, 256, 256] and the same logical tensor as NHWC [16, 256, 256, 2]. */
function hardData() {
  const g = gauss(rng(2015));
  const nchw = new Float32Array(N * C * HW), nhwc = new Float32Array(N * C * HW);
  const dyNchw = new Float32Array(N * C * HW), dyNhwc = new Float32Array(N * C * HW);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let j = 0; j < HW; j++) {
    const v = CENTER[c] + SPREAD[c] * g(), d = g();
    nchw[(n * C + c) * HW + j] = v; nhwc[(n * HW + j) * C + c] = v;
    dyNchw[(n * C + c) * HW + j] = d; dyNhwc[(n * HW + j) * C + c] = d;
  }
  return { nchw, nhwc, dyNchw, dyNhwc };
}

const data = hardData();
const cases = [
  { layout: 'NCHW' as const, shape: [N, C, 256, 256], x: data.nchw, dy: data.dyNchw, ch: (i: number) => Math.floor(i / HW) % C },
  { layout: 'NHWC' as const, shape: [N, 256, 256, C], x: data.nhwc, dy: data.dyNhwc, ch: (i: number) => i % C },
];

it('the data is hard: one-pass float32 variance is off by more than 1%', () => {
  for (let c = 0; c < C; c++) {
    let s = Math.fround(0), q = Math.fround(0);
    for (let i = 0; i < data.nchw.length; i++) {
      if (cases[0].ch(i) !== c) continue;
      s = Math.fround(s + data.nchw[i]);
      q = Math.fround(q + Math.fround(data.nchw[i] * data.nchw[i]));
    }
    const n = N * HW;
    const naive = Math.fround(Math.fround(q / n) - Math.fround(Math.fround(s / n) * Math.fround(s / n)));
    const exact = oracleForward(data.nchw, cases[0].shape, { training: true }).batchVar![c];
    expect(Math.abs(naive - exact) / exact).toBeGreaterThan(1e-2);
  }
});

describe.each(BUILDS)('hard data, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it.each(cases)('$layout: mean, variance, y, dx, dweight, dbias', ({ layout, shape, x, dy, ch }) => {
    const gamma = Float32Array.of(1.5, -0.75), beta = Float32Array.of(0.25, 2);
    // momentum 1 with the biased estimator stores the batch variance itself, rounded to f32.
    const runningMean = new Float32Array(C), runningVar = new Float32Array(C);
    const r = engine.forward(x, shape, {
      layout, training: true, weight: gamma, bias: beta, runningMean, runningVar, momentum: 1, unbiasedRunningVar: false,
    });
    const o = oracleForward(x, shape, { layout, training: true, weight: gamma, bias: beta });
    for (let c = 0; c < C; c++) {
      const meanErrUlp = Math.abs(r.saveMean[c] - o.mean[c]) / ulp32(o.mean[c]);
      const varErr = Math.abs(runningVar[c] - o.batchVar![c]) / o.batchVar![c];
      record(`${layout} saveMean (ulp, bound 2)`, meanErrUlp);
      record(`${layout} variance (relative, bound 1e-6)`, varErr);
      expect(meanErrUlp, `mean c=${c}`).toBeLessThanOrEqual(2);
      expect(varErr, `var c=${c}`).toBeLessThanOrEqual(1e-6);
    }
    let yRatio = 0;
    for (let i = 0; i < x.length; i++) {
      const c = ch(i);
      yRatio = Math.max(yRatio, Math.abs(r.y[i] - o.y[i]) / tolY(o.y[i], gamma[c], beta[c]));
    }
    record(`${layout} y (fraction of tolY)`, yRatio);
    expect(yRatio).toBeLessThanOrEqual(1);

    const b = engine.backward(dy, x, shape, { layout, training: true, weight: gamma, saveMean: r.saveMean, saveInvStd: r.saveInvStd });
    const ob = oracleBackward(dy, x, shape, { layout, training: true, weight: gamma, mean: r.saveMean, invStd: r.saveInvStd });
    const n = x.length / C;
    const sums = Array.from({ length: C }, () => ({ dy: 0, dyx: 0, ady: 0, adyx: 0 }));
    for (let i = 0; i < x.length; i++) {
      const s = sums[ch(i)], t = dy[i] * (x[i] - r.saveMean[ch(i)]);
      s.dy += dy[i]; s.ady += Math.abs(dy[i]); s.dyx += t; s.adyx += Math.abs(t);
    }
    const facts = sums.map((s, c) => ({
      n, sumAbsDy: s.ady, sumAbsDyXmu: s.adyx, invStd: r.saveInvStd[c],
      k1: s.dy / n, k2: (s.dyx * r.saveInvStd[c] ** 2) / n, k3: gamma[c] * r.saveInvStd[c],
    }));
    let dxRatio = 0;
    for (let i = 0; i < x.length; i++) {
      const c = ch(i);
      dxRatio = Math.max(dxRatio, Math.abs(b.dx[i] - ob.dx[i]) / tolDx(dy[i], x[i] - r.saveMean[c], facts[c]));
    }
    record(`${layout} dx (fraction of tolDx)`, dxRatio);
    expect(dxRatio).toBeLessThanOrEqual(1);
    for (let c = 0; c < C; c++) {
      const w = Math.abs(b.dweight[c] - ob.dweight[c]) / tolDweight(ob.dweight[c], facts[c]);
      const d = Math.abs(b.dbias[c] - ob.dbias[c]) / tolDbias(ob.dbias[c], facts[c]);
      record(`${layout} dweight (fraction of bound)`, w);
      record(`${layout} dbias (fraction of bound)`, d);
      expect(w).toBeLessThanOrEqual(1);
      expect(d).toBeLessThanOrEqual(1);
    }
  });
});

afterAll(() => {
  console.log(`largest errors on hard data (|mean|/std = 1e4, 2^20 values per channel; adversarial pivots, 2^24), all builds:\n${
    [...worst].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n')}`);
});

// ---------------------------------------------------------------------------------------------
// Adversarial pivots: the shifted sums take a pivot K from the data; these channels put the
// values a pivot could be taken from (the first of the channel, and so the first of every block
// in the channel's first plane or rows) far from the mean in units of std, where a single
// pivot's s2 − s1²/n cancels by a factor up to n. 2^24 values per channel (C = 1: one buffer
// serves every kernel path: the fused NCHW path, the NCHW memory-order path, channels-last
// rank 2 and NHWC), and 2^20 per channel with C = 3 (the NHWC period code, C % 4 != 0).
// Bounds unchanged: mean 2 ulp, variance 1e-6 relative, y within tolY.
const BIG = 2 ** 24;

/** Values per channel of each adversarial kind; first = the value at the channel's start. */
function adversarial(kind: 'outlier' | 'sparse' | 'relu', n: number, seed: number): Float32Array {
  const g = gauss(rng(seed));
  const x = new Float32Array(n);
  if (kind === 'outlier') for (let i = 0; i < n; i++) x[i] = i === 0 ? 3000 : 0.1 + g() / 3; // squares not exact in binary
  else if (kind === 'sparse') x[0] = 7.3; // a post-ReLU channel, zero except its first value
  else for (let i = 0; i < n; i++) x[i] = i === 0 ? 50 : Math.max(g() - 2.5, 0); // post-ReLU, 0.6% non-zero
  return x;
}

const KINDS = ['outlier', 'sparse', 'relu'] as const;
const PATHS_C1 = [
  { name: 'NCHW fused (planes of 2^24)', layout: 'NCHW' as const, shape: [1, 1, 4096, 4096] },
  { name: 'NCHW memory order (planes of 512)', layout: 'NCHW' as const, shape: [BIG / 512, 1, 512] },
  { name: 'channels-last rank 2 [N, C]', layout: 'NCHW' as const, shape: [BIG, 1] },
  { name: 'NHWC', layout: 'NHWC' as const, shape: [4096, 4096, 1] },
];

/**
 * max_i |y_i − o_i| / tolY(o_i): an upper bound through tolY >= 8u·|o| + 8u·(|γ| + |β|) (ulp32(v) >=
 * u·|v|) where that is at most 1, the exact ratio elsewhere (fast over 2^24 values).
 */
function maxYRatio(y: Float32Array, o: Float64Array, ch: (i: number) => number, gamma: ArrayLike<number>, beta: ArrayLike<number>) {
  let worst = 0, at = 0;
  for (let i = 0; i < y.length; i++) {
    const c = ch(i), d = Math.abs(y[i] - o[i]);
    const floor = 8 * U32 * (Math.abs(gamma[c]) + Math.abs(beta[c]));
    let ratio = d / (8 * U32 * Math.abs(o[i]) + floor);
    if (!(ratio <= 1)) ratio = d / tolY(o[i], gamma[c], beta[c]);
    if (!(ratio <= worst)) { worst = ratio; at = i; }
  }
  return { worst, at };
}

describe.each(KINDS)('adversarial pivots: %s channels', (kind) => {
  const x = adversarial(kind, BIG, 24);
  // C = 1: y depends on the values alone, so one oracle run serves every shape.
  const o = oracleForward(x, [BIG, 1], { training: true, weight: Float32Array.of(1.25), bias: Float32Array.of(-0.5) });

  // The debug build runs the SIMD build's arithmetic (with checks): its bits are the simd build's.
  describe.each(BUILD_NAMES)('%s build', (build: BuildName) => {
    if (skipBuild(build)) return;
    let engine: Engine;
    beforeAll(async () => {
      engine = await makeEngine(build);
    });

    it.each(PATHS_C1)('$name: mean, variance, y; engine.moments', ({ layout, shape }) => {
      const runningMean = new Float32Array(1), runningVar = new Float32Array(1);
      const r = engine.forward(x, shape, {
        layout, training: true, weight: Float32Array.of(1.25), bias: Float32Array.of(-0.5),
        runningMean, runningVar, momentum: 1, unbiasedRunningVar: false,
      });
      const v = o.batchVar![0];
      const meanUlp = Math.abs(r.saveMean[0] - o.mean[0]) / ulp32(o.mean[0]);
      const varErr = Math.abs(runningVar[0] - v) / v;
      record(`adversarial ${kind} saveMean (ulp, bound 2)`, meanUlp);
      record(`adversarial ${kind} variance (relative, bound 1e-6)`, varErr);
      expect(meanUlp, 'saveMean').toBeLessThanOrEqual(2);
      expect(varErr, 'variance').toBeLessThanOrEqual(1e-6);
      const { worst: yRatio, at } = maxYRatio(r.y, o.y, () => 0, [1.25], [-0.5]);
      record(`adversarial ${kind} y (fraction of tolY, upper bound)`, yRatio);
      expect(yRatio, `y[${at}]: ${r.y[at]} vs ${o.y[at]}`).toBeLessThanOrEqual(1);
      const m = engine.moments(x, shape, { layout });
      expect(Math.abs(m.m2[0] / m.count - v) / v, 'moments variance').toBeLessThanOrEqual(1e-6);
    });
  });
});

describe.each(BUILDS)('adversarial pivots, C = 3 (outlier first in every channel), %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  const n = 2 ** 20, C = 3;
  const per = [adversarial('outlier', n, 1), adversarial('sparse', n, 2), adversarial('relu', n, 3)];
  const nhwc = new Float32Array(n * C), nchw = new Float32Array(n * C);
  for (let c = 0; c < C; c++) for (let i = 0; i < n; i++) { nhwc[i * C + c] = per[c][i]; nchw[c * n + i] = per[c][i]; }
  const cases = [
    { layout: 'NHWC' as const, shape: [1024, 1024, C], x: nhwc, ch: (i: number) => i % C },
    { layout: 'NCHW' as const, shape: [1, C, 1024, 1024], x: nchw, ch: (i: number) => Math.floor(i / n) },
  ];
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it.each(cases)('$layout: mean, variance, y', ({ layout, shape, x, ch }) => {
    const runningMean = new Float32Array(C), runningVar = new Float32Array(C);
    const r = engine.forward(x, shape, { layout, training: true, runningMean, runningVar, momentum: 1, unbiasedRunningVar: false });
    const o = oracleForward(x, shape, { layout, training: true });
    for (let c = 0; c < C; c++) {
      expect(Math.abs(r.saveMean[c] - o.mean[c]) / ulp32(o.mean[c]), `saveMean c=${c}`).toBeLessThanOrEqual(2);
      expect(Math.abs(runningVar[c] - o.batchVar![c]) / o.batchVar![c], `variance c=${c}`).toBeLessThanOrEqual(1e-6);
    }
    const { worst, at } = maxYRatio(r.y, o.y, ch, [1, 1, 1], [0, 0, 0]);
    expect(worst, `y[${at}] ${layout} C=${C}`).toBeLessThanOrEqual(1);
  });
});
