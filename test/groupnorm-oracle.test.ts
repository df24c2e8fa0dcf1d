// The GroupNorm / InstanceNorm oracle's own tests: cases worked by hand, the two layouts as one
// reference through strides, and its backward against central finite differences of its forward.
import { describe, expect, it } from 'vitest';
import { oracleGroupNorm, oracleGroupNormBackward, oracleInstanceNorm, oracleInstanceNormBackward } from '../src/oracle/groupnorm.js';
import { gauss, rng } from './helpers/numeric.js';

const close = (a: ArrayLike<number>, b: readonly number[], tol = 1e-12) => {
  expect(a.length).toBe(b.length);
  b.forEach((v, i) => expect(Math.abs(a[i] - v), `[${i}] ${a[i]} vs ${v}`).toBeLessThanOrEqual(tol));
};

describe('hand-checked', () => {
  // [1, 4, 2] NCHW, 2 groups. Group 0 = channels 0, 1 = [1, 3, 5, 7]: mean 4, var (9 + 1 + 1 + 9) / 4 = 5.
  // Group 1 = [0, 0, 4, 4]: mean 2, var 4, invStd 1/2 (eps 0). weight [1, 2, 3, 4], bias [0, 0, 1, −1]:
  //   c0: (1 − 4)/√5, (3 − 4)/√5 = −3/√5, −1/√5;  c1: 2·(1/√5), 2·(3/√5) = 2/√5, 6/√5
  //   c2: 3·(−1) + 1, 3·(−1) + 1 = −2, −2;          c3: 4·1 − 1 = 3, 3
  const x = [1, 3, 5, 7, 0, 0, 4, 4], weight = [1, 2, 3, 4], bias = [0, 0, 1, -1], r5 = Math.sqrt(5);
  const y = [-3 / r5, -1 / r5, 2 / r5, 6 / r5, -2, -2, 3, 3];

  it('GroupNorm: statistics per (n, group), per-channel affine', () => {
    const o = oracleGroupNorm(x, [1, 4, 2], { groups: 2, weight, bias, eps: 0 });
    close(o.mean, [4, 2]);
    close(o.variance, [5, 4]);
    close(o.invStd, [1 / r5, 0.5]);
    close(o.y, y);
  });

  it('NHWC is the same reference through strides: [1, 2, 4] holds x transposed', () => {
    const t = (a: readonly number[]) => [0, 1].flatMap((l) => [0, 1, 2, 3].map((c) => a[c * 2 + l]));
    const o = oracleGroupNorm(t(x), [1, 2, 4], { groups: 2, layout: 'NHWC', weight, bias, eps: 0 });
    close(o.y, t(y));
    close(o.mean, [4, 2]);
  });

  it('SiLU: y = z·σ(z) of the normalized-affine z (z = 0 gives 0, z = 3 gives 3/(1 + e^−3))', () => {
    const o = oracleGroupNorm(x, [1, 4, 2], { groups: 2, weight, bias, eps: 0, activation: 'silu' });
    close(o.z, y);
    expect(o.y[6]).toBeCloseTo(3 / (1 + Math.exp(-3)), 14);
    expect(o.y[4]).toBeCloseTo(-2 / (1 + Math.exp(2)), 14);
  });

  it('InstanceNorm: per (n, c); running stats averaged over n, unbiased (PyTorch)', () => {
    // [2, 1, 2]: n0 = [1, 3] mean 2, var 1, unbiased 2; n1 = [2, 6] mean 4, var 4, unbiased 8.
    // momentum 0.1 from (0, 1): mean 0.9·0 + 0.1·3 = 0.3, var 0.9·1 + 0.1·5 = 1.4.
    const o = oracleInstanceNorm([1, 3, 2, 6], [2, 1, 2], { runningMean: [0], runningVar: [1], eps: 0 });
    close(o.mean, [2, 4]);
    close(o.variance, [1, 4]);
    close(o.y, [-1, 1, -1, 1]);
    close(o.runningMean!, [0.3]);
    close(o.runningVar!, [1.4]);
    // useInputStats false: (x − 0.3)/sqrt(1.4) for every instance.
    const e = oracleInstanceNorm([1, 3, 2, 6], [2, 1, 2], { runningMean: [0.3], runningVar: [1.4], useInputStats: false, eps: 0 });
    close(e.y, [1, 3, 2, 6].map((v) => (v - 0.3) / Math.sqrt(1.4)));
  });

  it('backward by hand: one group of [1, 3, 5, 7] (w = 1): dy = xhat gives dx = 0, dweight = 4, dbias = 0', () => {
    // dx = invStd·(dy − mean(dy) − xhat·mean(dy·xhat)) with dy = xhat: mean(dy) = 0, mean(xhat²) = 1.
    const xhat = [1, 3, 5, 7].map((v) => (v - 4) / Math.sqrt(5));
    const b = oracleGroupNormBackward(xhat, [1, 3, 5, 7], [1, 1, 4], { groups: 1, mean: [4], invStd: [1 / Math.sqrt(5)] });
    close(b.dx, [0, 0, 0, 0]);
    close(b.dweight, [4]);
    close(b.dbias, [0]);
  });
});

describe('backward = finite differences of the forward', () => {
  const cases = [
    { shape: [2, 6, 3], layout: 'NCHW' as const, groups: 3, silu: false },
    { shape: [2, 6, 3], layout: 'NCHW' as const, groups: 2, silu: true },
    { shape: [2, 3, 4], layout: 'NHWC' as const, groups: 2, silu: true },
    { shape: [1, 5, 4], layout: 'NHWC' as const, groups: 1, silu: false },
  ];
  it.each(cases)('GroupNorm $layout $shape groups $groups silu $silu: dx, dweight, dbias', ({ shape, layout, groups, silu }) => {
    const g = gauss(rng(shape.join('').length * 7 + groups));
    const n = shape.reduce((a, b) => a * b, 1), C = layout === 'NCHW' ? shape[1] : shape[shape.length - 1];
    const x = Array.from({ length: n }, () => g()), r = Array.from({ length: n }, () => g());
    const weight = Array.from({ length: C }, () => 1 + g() / 2), bias = Array.from({ length: C }, () => g());
    const activation = silu ? 'silu' as const : 'none' as const;
    const loss = (xs: number[], w: number[], b: number[]) =>
      oracleGroupNorm(xs, shape, { groups, layout, weight: w, bias: b, activation, eps: 1e-3 }).y.reduce((s, v, i) => s + v * r[i], 0);
    const f = oracleGroupNorm(x, shape, { groups, layout, weight, bias, activation, eps: 1e-3 });
    const bw = oracleGroupNormBackward(r, x, shape, { groups, layout, weight, bias, activation, mean: f.mean, invStd: f.invStd });
    const h = 1e-5, fd = (v: number[], i: number, call: (u: number[]) => number) => {
      const p = v.slice(), m = v.slice();
      p[i] += h; m[i] -= h;
      return (call(p) - call(m)) / (2 * h);
    };
    for (let i = 0; i < n; i++) expect(bw.dx[i]).toBeCloseTo(fd(x, i, (u) => loss(u, weight, bias)), 6);
    for (let c = 0; c < C; c++) {
      expect(bw.dweight[c]).toBeCloseTo(fd(weight, c, (u) => loss(x, u, bias)), 6);
      expect(bw.dbias[c]).toBeCloseTo(fd(bias, c, (u) => loss(x, weight, u)), 6);
    }
  });

  it('InstanceNorm: with input statistics, and with constant (running) statistics', () => {
    const g = gauss(rng(5)), shape = [2, 3, 4], n = 24;
    const x = Array.from({ length: n }, () => g()), r = Array.from({ length: n }, () => g()), weight = [0.5, 2, -1];
    for (const useInputStats of [true, false]) {
      const run = { runningMean: [0.1, -0.2, 0.3], runningVar: [1, 2, 0.5] };
      const loss = (xs: number[]) => oracleInstanceNorm(xs, shape, { weight, ...run, useInputStats, eps: 1e-3 }).y.reduce((s, v, i) => s + v * r[i], 0);
      const f = oracleInstanceNorm(x, shape, { weight, ...run, useInputStats, eps: 1e-3 });
      const bw = oracleInstanceNormBackward(r, x, shape, { weight, mean: f.mean, invStd: f.invStd, useInputStats });
      for (let i = 0; i < n; i++) {
        const p = x.slice(), m = x.slice();
        p[i] += 1e-5; m[i] -= 1e-5;
        expect(bw.dx[i], `useInputStats ${useInputStats} [${i}]`).toBeCloseTo((loss(p) - loss(m)) / 2e-5, 6);
      }
    }
  });
});
