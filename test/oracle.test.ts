import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { oracleBackward, oracleForward, oracleMoments } from '../src/oracle/batchnorm.js';
import { rng as mulberry32 } from './helpers/numeric.js';

const EPS = Number.EPSILON; // 2^-52, twice the unit roundoff of float64
/** Absolute floor for tolerances on squares: fast-check picks values like 1e-160, whose squares underflow. */
const TINY = 1e-300;

/** |actual[i] - expected[i]| <= tol for every i, with the index in the failure message. */
function expectAllClose(actual: ArrayLike<number> | null, expected: ArrayLike<number>, tol: number): void {
  expect(actual).not.toBeNull();
  const a = actual as ArrayLike<number>;
  expect(a.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(a[i] - expected[i]), `index ${i}: got ${a[i]}, expected ${expected[i]}`).toBeLessThanOrEqual(tol);
  }
}

/** NCHW -> NHWC of a flat tensor with n batches, c channels and s spatial values: (n, c, s) -> (n, s, c). */
function toNHWC(x: ArrayLike<number>, n: number, c: number, s: number): Float64Array {
  const out = new Float64Array(n * c * s);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      for (let p = 0; p < s; p++) out[(b * s + p) * c + k] = x[(b * c + k) * s + p];
    }
  }
  return out;
}

/** Per-channel values of an NCHW flat tensor. */
function channelValues(x: ArrayLike<number>, n: number, c: number, s: number, k: number): number[] {
  const values: number[] = [];
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < s; p++) values.push(x[(b * c + k) * s + p]);
  }
  return values;
}

/** Naive float64 mean and biased variance (two passes), independent of the oracle. */
function naiveMoments(values: readonly number[]): { mean: number; variance: number } {
  const mean = values.reduce((a, v) => a + v, 0) / values.length;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length;
  return { mean, variance };
}


// ---------------------------------------------------------------------------------------------
// Hand-computed cases
// ---------------------------------------------------------------------------------------------

// x = [1, 2, 3, 4]:  mean = 10/4 = 2.5,  deviations = [-1.5, -0.5, 0.5, 1.5],
// m2 = 2.25 + 0.25 + 0.25 + 2.25 = 5,  biased var = 5/4 = 1.25,  unbiased var = 5/3.
// eps = 0: invStd = 1/sqrt(1.25) = 2/sqrt(5) = 0.894427191
// xhat = deviations * 2/sqrt(5) = [-3, -1, 1, 3]/sqrt(5) = [-1.3416407865, -0.4472135955, 0.4472135955, 1.3416407865]
const R5 = Math.sqrt(5);
const XHAT_1234 = [-3 / R5, -1 / R5, 1 / R5, 3 / R5];

// Two channels, N = 2, H = 1, W = 2 (logical x[n][c][h][w]):
//   channel 0 = [1, 2 | 3, 4]      -> mean 2.5, var 1.25, m2 5,   xhat = XHAT_1234
//   channel 1 = [10, 20 | 30, 40]  -> mean 25,  var 125,  m2 500, xhat = XHAT_1234 (x scaled by 10)
// weight = [2, 0.5], bias = [1, -1], eps = 0:
//   channel 0: y = 2*xhat + 1   = [-1.6832815730, 0.1055728090, 1.8944271910, 3.6832815730]
//   channel 1: y = 0.5*xhat - 1 = [-1.6708203932, -1.2236067977, -0.7763932023, -0.3291796068]
const Y0 = XHAT_1234.map((v) => 2 * v + 1);
const Y1 = XHAT_1234.map((v) => 0.5 * v - 1);
// NCHW flat order (n, c, w):  n0c0 [1, 2], n0c1 [10, 20], n1c0 [3, 4], n1c1 [30, 40]
const X2_NCHW = [1, 2, 10, 20, 3, 4, 30, 40];
const Y2_NCHW = [Y0[0], Y0[1], Y1[0], Y1[1], Y0[2], Y0[3], Y1[2], Y1[3]];
// NHWC flat order (n, w, c):  n0w0 [1, 10], n0w1 [2, 20], n1w0 [3, 30], n1w1 [4, 40]
const X2_NHWC = [1, 10, 2, 20, 3, 30, 4, 40];
const Y2_NHWC = [Y0[0], Y1[0], Y0[1], Y1[1], Y0[2], Y1[2], Y0[3], Y1[3]];
const AFFINE = { weight: [2, 0.5], bias: [1, -1] };

// Values of order 1..40 computed in a handful of float64 operations: 1e-14 absolute is ~100 ulps.
const HAND_TOL = 1e-14;

describe('oracleForward: hand-computed cases', () => {
  it('normalizes one channel in training mode (x = [1,2,3,4], eps = 0)', () => {
    const r = oracleForward([1, 2, 3, 4], [4, 1], { training: true, eps: 0 });
    expectAllClose(r.y, XHAT_1234, HAND_TOL);
    expectAllClose(r.mean, [2.5], 0);
    expectAllClose(r.batchMean, [2.5], 0);
    expectAllClose(r.batchVar, [1.25], 0);
    expectAllClose(r.invStd, [2 / R5], HAND_TOL);
    expect(r.runningMean).toBeNull();
    expect(r.runningVar).toBeNull();
  });

  it('uses eps = 1e-5 by default: y = (x - 2.5) / sqrt(1.25 + 1e-5)', () => {
    const r = oracleForward(new Float32Array([1, 2, 3, 4]), [4, 1], { training: true });
    const invStd = 1 / Math.sqrt(1.25 + 1e-5); // 0.8944236134..., not 2/sqrt(5) = 0.8944271910
    expectAllClose(r.invStd, [invStd], HAND_TOL);
    expectAllClose(r.y, [-1.5 * invStd, -0.5 * invStd, 0.5 * invStd, 1.5 * invStd], HAND_TOL);
    expect(Math.abs(r.y[0] - XHAT_1234[0])).toBeGreaterThan(1e-6);
  });

  it('normalizes two NCHW channels with weight and bias (default layout)', () => {
    const r = oracleForward(X2_NCHW, [2, 2, 1, 2], { training: true, eps: 0, ...AFFINE });
    expectAllClose(r.y, Y2_NCHW, HAND_TOL);
    expectAllClose(r.batchMean, [2.5, 25], 0);
    expectAllClose(r.batchVar, [1.25, 125], HAND_TOL);
    expectAllClose(r.invStd, [2 / R5, 2 / R5 / 10], HAND_TOL);
  });

  it('gives the same result for the same logical tensor in NHWC', () => {
    const r = oracleForward(X2_NHWC, [2, 1, 2, 2], { layout: 'NHWC', training: true, eps: 0, ...AFFINE });
    expectAllClose(r.y, Y2_NHWC, HAND_TOL);
    expectAllClose(r.batchMean, [2.5, 25], 0);
    expectAllClose(r.batchVar, [1.25, 125], HAND_TOL);
    // Rank 2 (N, C): the channel axis is the last one in both layouts, so NHWC order = NCHW order.
    for (const layout of ['NCHW', 'NHWC'] as const) {
      const r2 = oracleForward(X2_NHWC, [4, 2], { layout, training: true, eps: 0, ...AFFINE });
      expectAllClose(r2.y, [Y0[0], Y1[0], Y0[1], Y1[1], Y0[2], Y1[2], Y0[3], Y1[3]], HAND_TOL);
    }
  });

  it('updates running stats with momentum 0.1 and the unbiased variance by default', () => {
    const runningMean = [0, 1];
    const runningVar = [1, 2];
    const r = oracleForward(X2_NCHW, [2, 2, 1, 2], { training: true, eps: 0, ...AFFINE, runningMean, runningVar });
    // running_mean = 0.9 * [0, 1] + 0.1 * [2.5, 25]          = [0.25, 3.4]
    // running_var  = 0.9 * [1, 2] + 0.1 * [5/3, 500/3]       = [1.0666666667, 18.4666666667]   (m2 / (N - 1), N = 4)
    expectAllClose(r.runningMean, [0.25, 3.4], HAND_TOL);
    expectAllClose(r.runningVar, [0.9 + 0.5 / 3, 1.8 + 50 / 3], HAND_TOL);
    // Normalization still uses the batch statistics, and the inputs are not mutated.
    expectAllClose(r.y, Y2_NCHW, HAND_TOL);
    expect(runningMean).toEqual([0, 1]);
    expect(runningVar).toEqual([1, 2]);
  });

  it('updates running stats with the biased variance and a custom momentum', () => {
    const runningMean = new Float64Array([0, 1]);
    const runningVar = new Float64Array([1, 2]);
    const r = oracleForward(X2_NHWC, [2, 1, 2, 2], {
      layout: 'NHWC',
      training: true,
      eps: 0,
      runningMean,
      runningVar,
      momentum: 0.25,
      unbiasedRunningVar: false,
    });
    // running_mean = 0.75 * [0, 1] + 0.25 * [2.5, 25]   = [0.625, 7]
    // running_var  = 0.75 * [1, 2] + 0.25 * [1.25, 125] = [1.0625, 32.75]   (m2 / N): all exact in binary
    expectAllClose(r.runningMean, [0.625, 7], 0);
    expectAllClose(r.runningVar, [1.0625, 32.75], 0);
    expect(Array.from(runningMean)).toEqual([0, 1]);
    expect(Array.from(runningVar)).toEqual([1, 2]);
  });

  it('normalizes with the running stats in eval mode and returns them unchanged', () => {
    const runningMean = [2];
    const runningVar = [3];
    const r = oracleForward([1, 2, 3, 4], [4, 1], { training: false, eps: 1, weight: [3], bias: [1], runningMean, runningVar });
    // invStd = 1/sqrt(3 + 1) = 0.5;  y = (x - 2) * 0.5 * 3 + 1 = [-0.5, 1, 2.5, 4]   (exact)
    expectAllClose(r.y, [-0.5, 1, 2.5, 4], 0);
    expectAllClose(r.mean, [2], 0);
    expectAllClose(r.invStd, [0.5], 0);
    expect(r.batchMean).toBeNull();
    expect(r.batchVar).toBeNull();
    expectAllClose(r.runningMean, [2], 0);
    expectAllClose(r.runningVar, [3], 0);
    expect(r.runningMean).not.toBe(r.mean); // a copy, so callers can mutate one safely
  });

  it('uses batch statistics in eval mode without running stats (track_running_stats=False)', () => {
    const r = oracleForward(X2_NCHW, [2, 2, 1, 2], { training: false, eps: 0, ...AFFINE });
    expectAllClose(r.y, Y2_NCHW, HAND_TOL);
    expectAllClose(r.batchMean, [2.5, 25], 0);
    expectAllClose(r.batchVar, [1.25, 125], HAND_TOL);
    expect(r.runningMean).toBeNull();
    expect(r.runningVar).toBeNull();
  });

  it('gives a constant channel invStd 0 when eps = 0 (PyTorch InvStd), so y = bias', () => {
    const r = oracleForward([7, 1, 7, 2, 7, 3], [3, 2], { training: true, eps: 0, bias: [5, 0] });
    // x[n][c] = [[7, 1], [7, 2], [7, 3]]: channel 0 is constant.
    expectAllClose(r.invStd, [0, Math.sqrt(1.5)], HAND_TOL); // channel 1: mean 2, var 2/3
    expectAllClose([r.y[0], r.y[2], r.y[4]], [5, 5, 5], 0);
  });

  it('throws on inconsistent lengths', () => {
    expect(() => oracleForward([1, 2, 3], [4, 1], { training: true })).toThrow(/x has length 3, expected 4/);
    expect(() => oracleForward([1, 2, 3, 4], [2, 2], { training: true, weight: [1] })).toThrow(/weight/);
    expect(() => oracleForward([1, 2, 3, 4], [2, 2], { training: true, bias: [1, 2, 3] })).toThrow(/bias/);
    expect(() => oracleForward([1, 2, 3, 4], [2, 2], { training: true, runningMean: [0, 0] })).toThrow(/together/);
    expect(() => oracleForward([1, 2, 3, 4], [2, 2], { training: false, runningMean: [0], runningVar: [1] })).toThrow(/runningMean/);
    expect(() => oracleMoments([1, 2, 3, 4], [2, 3])).toThrow(/x has length 4, expected 6/);
    const stats = { training: true, mean: [0, 0], invStd: [1, 1] };
    expect(() => oracleBackward([1, 2, 3], [1, 2, 3, 4], [2, 2], stats)).toThrow(/dy/);
    expect(() => oracleBackward([1, 2, 3, 4], [1, 2, 3, 4], [2, 2], { ...stats, mean: [0] })).toThrow(/mean/);
    expect(() => oracleBackward([1, 2, 3, 4], [1, 2, 3, 4], [2, 2], { ...stats, invStd: [1, 1, 1] })).toThrow(/invStd/);
  });
});

describe('oracleBackward: hand-computed cases', () => {
  it('training: x = [1,2,3,4], dy = [1,0,0,0], eps = 0', () => {
    // xhat = [-3, -1, 1, 3]/sqrt(5), invStd = 2/sqrt(5), N = 4
    // dbias   = sum(dy)        = 1
    // dweight = sum(dy * xhat) = -3/sqrt(5) = -1.3416407865
    // dx = invStd * (dy - 1/4 - xhat * (-3/sqrt(5))/4) = invStd * (dy - 0.25 + 0.15 * [-3, -1, 1, 3])
    //    = 2/sqrt(5) * [1 - 0.25 - 0.45, -0.25 - 0.15, -0.25 + 0.15, -0.25 + 0.45]
    //    = 2/sqrt(5) * [0.3, -0.4, -0.1, 0.2] = [0.2683281573, -0.3577708764, -0.0894427191, 0.1788854382]
    const r = oracleBackward([1, 0, 0, 0], [1, 2, 3, 4], [4, 1], { training: true, mean: [2.5], invStd: [2 / R5] });
    expectAllClose(r.dbias, [1], 0);
    expectAllClose(r.dweight, [-3 / R5], HAND_TOL);
    expectAllClose(r.dx, [0.3, -0.4, -0.1, 0.2].map((v) => (2 / R5) * v), HAND_TOL);
    // With weight 3 every dx triples; dweight and dbias do not depend on the weight.
    const w = oracleBackward([1, 0, 0, 0], [1, 2, 3, 4], [4, 1], { training: true, weight: [3], mean: [2.5], invStd: [2 / R5] });
    expectAllClose(w.dx, [0.3, -0.4, -0.1, 0.2].map((v) => (6 / R5) * v), HAND_TOL);
    expectAllClose(w.dweight, [-3 / R5], HAND_TOL);
  });

  it('eval: dx = dy * weight * invStd with the given (running) statistics', () => {
    // mean 2, invStd 0.5, weight 3: xhat = [-0.5, 0, 0.5, 1]
    // dx = dy * 1.5 = [1.5, -3, 0, 3];  dweight = 1*(-0.5) + (-2)*0 + 5*0.5 + 2*1 = 4;  dbias = 1 - 2 + 5 + 2 = 6
    const r = oracleBackward([1, -2, 5, 2], [1, 2, 3, 4], [4, 1], { training: false, weight: [3], mean: [2], invStd: [0.5] });
    expectAllClose(r.dx, [1.5, -3, 7.5, 3], 0);
    expectAllClose(r.dweight, [4], 0);
    expectAllClose(r.dbias, [6], 0);
  });

  it('handles two NHWC channels like the same NCHW tensor', () => {
    const dyNCHW = [1, 0, 0, 2, 0, 0, 0, 0];
    const stats = { training: true, weight: [2, 0.5], mean: [2.5, 25], invStd: [2 / R5, 2 / R5 / 10] };
    const a = oracleBackward(dyNCHW, X2_NCHW, [2, 2, 1, 2], stats);
    const b = oracleBackward(toNHWC(dyNCHW, 2, 2, 2), X2_NHWC, [2, 1, 2, 2], { ...stats, layout: 'NHWC' });
    // Channel 0 sees dy = [1, 0, 0, 0] as above: dx = 2 * 2/sqrt(5) * [0.3, -0.4, -0.1, 0.2].
    // Channel 1 sees dy = [0, 2, 0, 0] on xhat = [-3, -1, 1, 3]/sqrt(5): dbias 2, dweight -2/sqrt(5),
    //   dx = 0.5 * invStd1 * (dy - 0.5 - xhat * (-2/sqrt(5))/4) = 0.5 * invStd1 * (dy - 0.5 + 0.1 * [-3, -1, 1, 3])
    //      = 0.5 * invStd1 * [-0.8, 1.4, -0.4, -0.2]
    const c0 = [0.3, -0.4, -0.1, 0.2].map((v) => 2 * (2 / R5) * v);
    const c1 = [-0.8, 1.4, -0.4, -0.2].map((v) => 0.5 * (2 / R5 / 10) * v);
    expectAllClose(a.dx, [c0[0], c0[1], c1[0], c1[1], c0[2], c0[3], c1[2], c1[3]], HAND_TOL);
    expectAllClose(a.dweight, [-3 / R5, -2 / R5], HAND_TOL);
    expectAllClose(a.dbias, [1, 2], 0);
    expectAllClose(b.dx, toNHWC(a.dx, 2, 2, 2), 0);
    expectAllClose(b.dweight, a.dweight, 0);
    expectAllClose(b.dbias, a.dbias, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties on random data
// ---------------------------------------------------------------------------------------------

/** A random NCHW tensor: per channel, x = center + scale * u with u in [-1, 1]. */
interface Case {
  n: number;
  c: number;
  spatial: number[];
  s: number;
  x: Float64Array;
  weight: number[];
  bias: number[];
  eps: number;
}

function caseArb(range: { center: number; minScale: number; maxScale: number; maxWeight: number; eps: number[] }): fc.Arbitrary<Case> {
  const dims = fc.record({
    n: fc.integer({ min: 1, max: 4 }),
    c: fc.integer({ min: 1, max: 3 }),
    spatial: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
  });
  const real = (min: number, max: number): fc.Arbitrary<number> => fc.double({ min, max, noNaN: true });
  return dims
    .filter(({ n, spatial }) => n * spatial.reduce((a, b) => a * b, 1) >= 2)
    .chain(({ n, c, spatial }) => {
      const s = spatial.reduce((a, b) => a * b, 1);
      const perChannel = (arb: fc.Arbitrary<number>) => fc.array(arb, { minLength: c, maxLength: c });
      return fc
        .record({
          u: fc.array(real(-1, 1), { minLength: n * c * s, maxLength: n * c * s }),
          center: perChannel(real(-range.center, range.center)),
          scale: perChannel(real(range.minScale, range.maxScale)),
          weight: perChannel(real(-range.maxWeight, range.maxWeight)),
          bias: perChannel(real(-10, 10)),
          eps: fc.constantFrom(...range.eps),
        })
        .map(({ u, center, scale, weight, bias, eps }) => ({
          n,
          c,
          spatial,
          s,
          x: Float64Array.from(u, (v, i) => center[Math.floor(i / s) % c] + scale[Math.floor(i / s) % c] * v),
          weight,
          bias,
          eps,
        }));
    });
}

const shapeOf = (k: Case): number[] => [k.n, k.c, ...k.spatial];
const shapeNHWC = (k: Case): number[] => [k.n, ...k.spatial, k.c];

describe('oracleForward: identities on random data', () => {
  it('per channel, mean(y) = bias and var(y) = weight^2 * var / (var + eps)', () => {
    // Tolerances (EPS = 2^-52). Let S = |beta| + |gamma| * (max|xhat| + |mean| * invStd), the size of the
    // terms that make up y. The oracle's mean is off by <= ~EPS * |mean| (compensated sum, one division),
    // which shifts every y by <= EPS * |gamma| * |mean| * invStd; invStd is off by a few EPS relative, and
    // the final multiply-add rounds by EPS * |y|; so each y_i is within E = 8 * EPS * S of exact.
    //  - mean(y): E plus this test's own naive summation, <= N * EPS * max|y|.
    //  - var(y) = sum((y - mean(y))^2) / N: a per-element error E changes it by <= 2 * E * sqrt(var(y)) + E^2,
    //    the error of mean(y) adds its square, and the naive sums add N * EPS relative (also to the
    //    expected value, whose var comes from this test's naive two-pass moments).
    // A real bug (unbiased var, missing eps, wrong channel) moves these by O(1/N) relative, not O(N * EPS).
    fc.assert(
      fc.property(caseArb({ center: 100, minScale: 0.01, maxScale: 10, maxWeight: 5, eps: [1e-5, 1e-3, 0.5] }), (k) => {
        const r = oracleForward(k.x, shapeOf(k), { training: true, weight: k.weight, bias: k.bias, eps: k.eps });
        const count = k.n * k.s;
        for (let ch = 0; ch < k.c; ch++) {
          const xs = channelValues(k.x, k.n, k.c, k.s, ch);
          const ys = channelValues(r.y, k.n, k.c, k.s, ch);
          const gamma = k.weight[ch];
          const beta = k.bias[ch];
          const { mean: xMean, variance: xVar } = naiveMoments(xs);
          const { mean: yMean, variance: yVar } = naiveMoments(ys);
          const invStd = r.invStd[ch];
          const maxXhat = Math.max(...xs.map((v) => Math.abs((v - xMean) * invStd)));
          const maxY = Math.max(...ys.map(Math.abs));
          const E = 8 * EPS * (Math.abs(beta) + Math.abs(gamma) * (maxXhat + Math.abs(xMean) * invStd));
          const tolMean = E + count * EPS * maxY + TINY;
          expect(Math.abs(yMean - beta)).toBeLessThanOrEqual(tolMean);

          const expectedVar = (gamma * gamma * xVar) / (xVar + k.eps);
          const tolVar = 2 * E * Math.sqrt(expectedVar) + (E + tolMean) ** 2 + 2 * (count + 4) * EPS * expectedVar + TINY;
          expect(Math.abs(yVar - expectedVar)).toBeLessThanOrEqual(tolVar);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('NCHW and NHWC of the same logical tensor give identical results', () => {
    // Both layouts visit a channel's values in the same (n, spatial) order, so every sum is the same
    // sequence of float64 operations: the results must be bit-identical, not merely close.
    fc.assert(
      fc.property(caseArb({ center: 100, minScale: 0.01, maxScale: 10, maxWeight: 5, eps: [1e-5, 1e-3] }), fc.boolean(), (k, training) => {
        const runningMean = Array.from({ length: k.c }, (_, i) => i - 1);
        const runningVar = Array.from({ length: k.c }, (_, i) => i + 0.5);
        const opts = { training, weight: k.weight, bias: k.bias, eps: k.eps, runningMean, runningVar };
        const a = oracleForward(k.x, shapeOf(k), opts);
        const b = oracleForward(toNHWC(k.x, k.n, k.c, k.s), shapeNHWC(k), { ...opts, layout: 'NHWC' });
        expect(b.y).toEqual(toNHWC(a.y, k.n, k.c, k.s));
        expect(b.mean).toEqual(a.mean);
        expect(b.invStd).toEqual(a.invStd);
        expect(b.batchVar).toEqual(a.batchVar);
        expect(b.runningMean).toEqual(a.runningMean);
        expect(b.runningVar).toEqual(a.runningVar);

        const dy = Float64Array.from(k.x, (_, i) => Math.sin(i + 1));
        const stats = { training, weight: k.weight, mean: a.mean, invStd: a.invStd };
        const ga = oracleBackward(dy, k.x, shapeOf(k), stats);
        const gb = oracleBackward(toNHWC(dy, k.n, k.c, k.s), toNHWC(k.x, k.n, k.c, k.s), shapeNHWC(k), { ...stats, layout: 'NHWC' });
        expect(gb.dx).toEqual(toNHWC(ga.dx, k.n, k.c, k.s));
        expect(gb.dweight).toEqual(ga.dweight);
        expect(gb.dbias).toEqual(ga.dbias);
      }),
      { numRuns: 100 },
    );
  });

  it('oracleMoments agrees with oracleForward and with a naive two-pass computation', () => {
    fc.assert(
      fc.property(caseArb({ center: 100, minScale: 0.01, maxScale: 10, maxWeight: 1, eps: [1e-5] }), (k) => {
        const m = oracleMoments(k.x, shapeOf(k));
        const r = oracleForward(k.x, shapeOf(k), { training: true });
        expect(m.count).toBe(k.n * k.s);
        expect(m.mean).toEqual(r.batchMean);
        expect(m.m2.map((v) => v / m.count)).toEqual(r.batchVar);
        for (let ch = 0; ch < k.c; ch++) {
          const xs = channelValues(k.x, k.n, k.c, k.s, ch);
          const naive = naiveMoments(xs);
          // The naive sums are off by <= N * EPS relative (of the magnitudes summed); a mean off by
          // delta adds delta^2 to a two-pass variance (visible on constant channels, where it is all there is).
          const maxAbs = Math.max(...xs.map(Math.abs));
          const tolMean = 2 * m.count * EPS * maxAbs;
          expect(Math.abs(m.mean[ch] - naive.mean)).toBeLessThanOrEqual(tolMean);
          const tolVar = 4 * m.count * EPS * naive.variance + tolMean ** 2 + TINY;
          expect(Math.abs(m.m2[ch] / m.count - naive.variance)).toBeLessThanOrEqual(tolVar);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('oracleBackward: central finite differences of L = sum(y * r)', () => {
  // dL/dz ~ (L(z + h) - L(z - h)) / (2h). Truncation error is h^2/6 * L''' : with |x| <= 4, per-channel
  // std >= ~0.2 (so invStd <= 5) and |weight|, |r| <= 2, L''' stays below ~1e3, i.e. < 2e-8 at h = 1e-5.
  // Rounding error is ~EPS * sum|y * r| / h ~ 1e-16 * 1e2 / 1e-5 = 1e-9. So we allow 1e-6 * max(1, |grad|):
  // gradients are O(1), and a wrong formula (a dropped mean or variance term) is off by O(1/N) >= 1e-2.
  // In training the forward recomputes the batch mean/var from the perturbed x, so the difference
  // includes the gradient through them; in eval the running stats are constants.
  const H = 1e-5;
  const TOL = 1e-6;
  const fdCase = caseArb({ center: 2, minScale: 0.5, maxScale: 2, maxWeight: 2, eps: [1e-5, 1e-3, 0.1] });

  function check(k: Case, seed: number, training: boolean): void {
    const shape = shapeOf(k);
    const rand = mulberry32(seed);
    const r = Float64Array.from(k.x, () => 4 * rand() - 2);
    const runningMean = k.weight.map(() => 2 * rand() - 1);
    const runningVar = k.weight.map(() => 0.25 + rand());
    const loss = (x: ArrayLike<number>, weight: number[], bias: number[]): number => {
      const { y } = oracleForward(x, shape, { training, weight, bias, eps: k.eps, runningMean, runningVar });
      return y.reduce((a, v, i) => a + v * r[i], 0);
    };
    const fd = (perturb: (h: number) => number): number => (perturb(H) - perturb(-H)) / (2 * H);

    const fwd = oracleForward(k.x, shape, { training, weight: k.weight, bias: k.bias, eps: k.eps, runningMean, runningVar });
    const grad = oracleBackward(r, k.x, shape, { training, weight: k.weight, mean: fwd.mean, invStd: fwd.invStd });

    const compare = (analytic: ArrayLike<number>, numeric: number[]): void => {
      const scale = Math.max(1, ...Array.from(analytic, Math.abs));
      expectAllClose(analytic, numeric, TOL * scale);
    };
    compare(
      grad.dx,
      Array.from(k.x, (_, i) => fd((h) => loss(k.x.map((v, j) => (j === i ? v + h : v)), k.weight, k.bias))),
    );
    compare(
      grad.dweight,
      k.weight.map((_, c) => fd((h) => loss(k.x, k.weight.map((v, j) => (j === c ? v + h : v)), k.bias))),
    );
    compare(
      grad.dbias,
      k.bias.map((_, c) => fd((h) => loss(k.x, k.weight, k.bias.map((v, j) => (j === c ? v + h : v))))),
    );
  }

  /** Per-channel std of x >= 0.2: keeps invStd <= 5 and L''' bounded (fast-check likes constant arrays). */
  const spreadOut = (k: Case): boolean =>
    Array.from({ length: k.c }, (_, ch) => naiveMoments(channelValues(k.x, k.n, k.c, k.s, ch)).variance).every((v) => v >= 0.04);

  it('training mode (gradient through the batch mean and variance)', () => {
    fc.assert(
      fc.property(fdCase, fc.integer(), (k, seed) => {
        fc.pre(spreadOut(k));
        check(k, seed, true);
      }),
      { numRuns: 60 },
    );
  });

  it('eval mode (running mean and invStd are constants)', () => {
    fc.assert(
      fc.property(fdCase, fc.integer(), (k, seed) => check(k, seed, false)),
      { numRuns: 60 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Compensated summation
// ---------------------------------------------------------------------------------------------

describe('oracleMoments: accuracy on 2^20 values with mean 1e4 and std ~1', () => {
  it('matches the exact mean and variance of symmetric pairs around a known center', () => {
    // Values center +- D_k * 2^-30 with integer D_k uniform in +-sqrt(3) * 2^30 (std ~1), center = 10000.5.
    // Every value is exact (14 integer bits + 30 fraction bits < 53), the exact mean is the center and the
    // exact m2 = sum(2 * D_k^2) * 2^-60, computed with BigInt and rounded once. The +d half comes first and
    // the -d half last, in reverse order, so a naive running sum drifts (partial sums reach 1e10 and need
    // ~64 bits).
    const half = 2 ** 19;
    const center = 10000.5;
    const rand = mulberry32(12345);
    const x = new Float64Array(2 * half);
    let exactM2 = 0n;
    for (let k = 0; k < half; k++) {
      const d = Math.round((2 * rand() - 1) * Math.sqrt(3) * 2 ** 30);
      x[k] = center + d * 2 ** -30;
      x[2 * half - 1 - k] = center - d * 2 ** -30;
      exactM2 += 2n * BigInt(d) * BigInt(d);
    }
    const exactVar = (Number(exactM2) * 2 ** -60) / x.length; // division by 2^20 is exact

    const m = oracleMoments(x, [1024, 1, 1024]);
    const ulp = 2 ** -39; // spacing of float64 near 1e4 (2^13 <= 10000.5 < 2^14)
    expect(m.count).toBe(2 ** 20);
    expect(Math.abs(m.mean[0] - center)).toBeLessThanOrEqual(ulp);
    expect(Math.abs(m.m2[0] / m.count - exactVar)).toBeLessThanOrEqual(4 * EPS * exactVar);

    // Sanity check that this data defeats naive summation (~100 ulps off the mean, ~60 EPS off the
    // variance for this seed), so the assertions above do test the compensation.
    const naive = naiveMoments(Array.from(x));
    expect(Math.abs(naive.mean - center)).toBeGreaterThan(10 * ulp);
    expect(Math.abs(naive.variance - exactVar)).toBeGreaterThan(4 * EPS * exactVar);
  });
});
