// Synchronized batch norm building blocks (src/sync.ts): engine.moments, mergeMoments /
// reduceMoments, engine.forwardWithMoments, engine.backwardReduce, mergeBackwardSums,
// engine.backwardWithSums. A batch split along N into k shards (k = 1..8, uneven sizes, any merge
// order) must give the single-batch result: forward y, saveMean/saveInvStd, running statistics,
// and backward dx, dweight, dbias; on every build, copy and zero-copy, in place and not.
//
// Tolerances (helpers/tolerance.ts holds the single-batch ones; the merged moments add):
//   A shard's kernel statistics obey the single-batch bounds with its own facts; its values lie
//   within 2·maxDev of the global mean (maxDev = max |x − mean| of the whole channel), so each
//   shard's mean error is <= γ_{n+4}·(|mean| + 13·maxDev) and the m2 errors sum to
//   <= γ_{n+4}·(8·m2 + 64·n·maxDev²). Chan's merge is a weighted average for the mean (errors
//   do not grow) plus ~3 f64 roundings per merge, and adds δ²·na·nb/n (|δ| <= 2·maxDev,
//   na·nb/n <= n/4) whose error through δ is <= 2·|δ|·2·meanErr·n/4 per merge. With at most k
//   merges:
//     meanErrMerged = γ_{n+4+8k}·(|mean| + 13·maxDev)
//     m2ErrMerged   = γ_{n+4}·(8·m2 + 64·n·maxDev²) + k·(2·n·maxDev·meanErrMerged + 5·u64·m2)
//   saveMean: 2 ulp + meanErrMerged; saveInvStd: ulp + ½·invStd·(m2ErrMerged/n)/(var + eps);
//   running stats: ½ ulp + m·meanErrMerged (m2ErrMerged/divisor) + 8·u64·(|old| + |batch|) (the f64
//   update's roundings, ~4 each in the engine and in the oracle).
//   y: tolY (the statistics' error stays far below one f32 rounding of y).
//   Backward: the k per-shard f64 sums summed again are still sums of the same n terms (error
//   <= γ_{n+2}·Σ|term|), sumDyXhat = invStd·Σdy(x − mean) rounds once more per shard (covered by
//   the factor 4 in tolDweight/tolDx), so tolDx, tolDweight, tolDbias apply unchanged.
//   Sharded vs single-batch: the sum of the two results' bounds against the oracle (backward:
//   the single-batch engine.backward run with the sharded forward's saveMean/saveInvStd).
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Engine } from '../src/engine.js';
import { BatchNormError, InvalidArgumentError, ShapeError } from '../src/errors.js';
import { mergeBackwardSums, mergeMoments, reduceMoments, type Moments } from '../src/ops/sync.js';
import { oracleBackward, oracleForward, oracleMoments } from '../src/oracle/batchnorm.js';
import { BUILDS, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { U64, channelOf, expectClose, gamma64, gauss, product, rng, ulp32 } from './helpers/numeric.js';
import { tolDbias, tolDweight, tolDx, tolY, type BackwardFacts, type ChannelFacts } from './helpers/tolerance.js';
import { runSyncExample } from '../examples/sync-bn/main.js';

type Layout = 'NCHW' | 'NHWC';

function meanErrMerged(f: ChannelFacts, k: number): number {
  return gamma64(f.n + 4 + 8 * k) * (Math.abs(f.mean) + 13 * f.maxDev);
}
function m2ErrMerged(f: ChannelFacts, k: number): number {
  return gamma64(f.n + 4) * (8 * f.m2 + 64 * f.n * f.maxDev ** 2) + k * (2 * f.n * f.maxDev * meanErrMerged(f, k) + 5 * U64 * f.m2);
}


function channelsOf(shape: readonly number[], layout: Layout): number {
  return shape[layout === 'NCHW' ? 1 : shape.length - 1];
}

/** Facts of x per channel around the oracle's exact mean. */
function facts(x: ArrayLike<number>, shape: number[], layout: Layout, mean: Float64Array): ChannelFacts[] {
  const ch = channelOf(shape, layout);
  const f = Array.from(mean, (m) => ({ n: x.length / mean.length, mean: m, m2: 0, maxDev: 0 }));
  for (let i = 0; i < x.length; i++) {
    const c = f[ch(i)];
    const d = x[i] - c.mean;
    c.m2 += d * d;
    c.maxDev = Math.max(c.maxDev, Math.abs(d));
  }
  return f;
}

function backwardFacts(
  dy: Float32Array, x: Float32Array, shape: number[], layout: Layout, weight: Float32Array | null, mean: Float32Array, invStd: Float32Array,
): BackwardFacts[] {
  const ch = channelOf(shape, layout);
  const C = mean.length, n = x.length / C;
  const s = Array.from({ length: C }, () => ({ sumDy: 0, sumDyXmu: 0, sumAbsDy: 0, sumAbsDyXmu: 0 }));
  for (let i = 0; i < x.length; i++) {
    const c = ch(i), t = dy[i] * (x[i] - mean[c]);
    s[c].sumDy += dy[i]; s[c].sumAbsDy += Math.abs(dy[i]);
    s[c].sumDyXmu += t; s[c].sumAbsDyXmu += Math.abs(t);
  }
  return s.map((v, c) => ({
    n, sumAbsDy: v.sumAbsDy, sumAbsDyXmu: v.sumAbsDyXmu, invStd: invStd[c],
    k1: v.sumDy / n, k2: (v.sumDyXmu * invStd[c] * invStd[c]) / n, k3: (weight?.[c] ?? 1) * invStd[c],
  }));
}

/** Rows of axis 0 split into `sizes` contiguous shards. */
function shardsOf(a: Float32Array, shape: number[], sizes: number[]): Float32Array[] {
  const row = a.length / shape[0];
  let start = 0;
  return sizes.map((rows) => {
    const s = a.slice(start * row, (start + rows) * row);
    start += rows;
    return s;
  });
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

interface Case {
  layout: Layout; shape: number[]; sizes: number[]; order: number[]; tree: boolean; affine: boolean; running: boolean;
  momentum: number; unbiased: boolean; eps: number; zeroCopy: boolean; inPlace: boolean; seed: number;
}

function makeData(k: Case) {
  const next = rng(k.seed);
  const g = gauss(next);
  const C = channelsOf(k.shape, k.layout);
  const ch = channelOf(k.shape, k.layout);
  const size = product(k.shape);
  // Per-channel offsets up to 1e3 and spreads over six decades (the API test's data).
  const center = Array.from({ length: C }, () => (next() - 0.5) * 2 * 10 ** (3 * next()));
  const spread = Array.from({ length: C }, () => 10 ** (6 * next() - 3));
  const x = Float32Array.from({ length: size }, (_, i) => center[ch(i)] + spread[ch(i)] * g());
  const dy = Float32Array.from({ length: size }, () => g());
  const weight = k.affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null;
  const bias = k.affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null;
  const runningMean = k.running ? Float32Array.from(center, (m) => m + (next() - 0.5) * 0.1) : null;
  const runningVar = k.running ? Float32Array.from(spread, (s) => s * s * (0.5 + next())) : null;
  return { C, size, x, dy, weight, bias, runningMean, runningVar };
}

/** One training step split over shards, as the workers of examples/sync-bn do it. */
function shardedStep(engine: Engine, k: Case, d: ReturnType<typeof makeData>) {
  const shapes = k.sizes.map((rows) => [rows, ...k.shape.slice(1)]);
  const xs = shardsOf(d.x, k.shape, k.sizes), dys = shardsOf(d.dy, k.shape, k.sizes);
  const held: Array<{ free(): void }> = [];
  // A getter: zero-copy views must be read again after any call that may grow wasm memory.
  const place = (a: Float32Array): (() => Float32Array) => {
    if (!k.zeroCopy) {
      const copy = a.slice();
      return () => copy;
    }
    const t = engine.tensor(a);
    held.push(t);
    return () => t.data;
  };
  try {
    const xIn = xs.map(place);
    const locals = xIn.map((x, s) => engine.moments(x(), shapes[s], { layout: k.layout }));
    for (let s = 0; s < xs.length; s++) expect(locals[s].count).toBe(product(shapes[s]) / d.C);
    // The all-reduce: a tree, or a chain in a random order.
    const ordered = k.order.map((s) => locals[s]);
    const global = k.tree ? reduceMoments(ordered) : ordered.slice(1).reduce((a, b) => mergeMoments(a, b), ordered[0] as Moments);
    const running = k.sizes.map(() => ({ rm: d.runningMean?.slice() ?? null, rv: d.runningVar?.slice() ?? null }));
    const fwd = xIn.map((x, s) => {
      const r = engine.forwardWithMoments(x(), shapes[s], {
        layout: k.layout, moments: global, weight: d.weight, bias: d.bias, runningMean: running[s].rm, runningVar: running[s].rv,
        momentum: k.momentum, unbiasedRunningVar: k.unbiased, eps: k.eps, out: k.inPlace ? x() : undefined,
      });
      return { y: r.y.slice(), saveMean: r.saveMean, saveInvStd: r.saveInvStd };
    });
    const y = concat(fwd.map((f) => f.y));
    // Every shard sees the same statistics and running statistics, bit for bit.
    for (let s = 1; s < fwd.length; s++) {
      expect(fwd[s].saveMean).toEqual(fwd[0].saveMean);
      expect(fwd[s].saveInvStd).toEqual(fwd[0].saveInvStd);
      expect(running[s]).toEqual(running[0]);
    }
    const { saveMean, saveInvStd } = fwd[0];
    // Backward: x again (in place overwrote it), dy per shard.
    const xB = xs.map(place), dyB = dys.map(place);
    const sums = xB.map((x, s) => engine.backwardReduce(dyB[s](), x(), shapes[s], { layout: k.layout, saveMean, saveInvStd }));
    const ordSums = k.order.map((s) => sums[s]);
    const globalSums = ordSums.slice(1).reduce((a, b) => mergeBackwardSums(a, b), ordSums[0]);
    const bwd = xB.map((x, s) => {
      const r = engine.backwardWithSums(dyB[s](), x(), shapes[s], {
        layout: k.layout, weight: d.weight, saveMean, saveInvStd, ...globalSums, count: global.count, out: k.inPlace ? dyB[s]() : undefined,
      });
      return { dx: r.dx.slice(), dweight: r.dweight, dbias: r.dbias };
    });
    for (let s = 1; s < bwd.length; s++) {
      expect(bwd[s].dweight).toEqual(bwd[0].dweight);
      expect(bwd[s].dbias).toEqual(bwd[0].dbias);
    }
    return {
      global, y, saveMean, saveInvStd, rm: running[0].rm, rv: running[0].rv,
      dx: concat(bwd.map((b) => b.dx)), dweight: bwd[0].dweight, dbias: bwd[0].dbias,
    };
  } finally {
    for (const t of held) t.free();
  }
}

/** Checks the sharded step against the oracle and against the single-batch engine calls. */
function checkCase(engine: Engine, k: Case): void {
  const d = makeData(k);
  const what = JSON.stringify(k);
  const kShards = k.sizes.length;
  const sh = shardedStep(engine, k, d);
  expect(engine.info().bytesInUse, 'scratch released').toBe(0);

  // Single batch: engine.forward (training) and the oracle.
  const rm1 = d.runningMean?.slice() ?? null, rv1 = d.runningVar?.slice() ?? null;
  const opts = { layout: k.layout, weight: d.weight, bias: d.bias, momentum: k.momentum, unbiasedRunningVar: k.unbiased, eps: k.eps };
  const single = engine.forward(d.x, k.shape, { ...opts, training: true, runningMean: rm1, runningVar: rv1 });
  const o = oracleForward(d.x, k.shape, { ...opts, training: true, runningMean: d.runningMean, runningVar: d.runningVar });
  const f = facts(d.x, k.shape, k.layout, o.mean);
  const exact = oracleMoments(d.x, k.shape, k.layout); // compensated m2
  const ch = channelOf(k.shape, k.layout);
  expect(sh.global.count).toBe(f[0].n);

  for (let i = 0; i < d.size; i++) {
    const c = ch(i);
    const t = tolY(o.y[i], d.weight?.[c] ?? 1, d.bias?.[c] ?? 0);
    expectClose(sh.y[i], o.y[i], t, `sharded y[${i}] vs oracle ${what}`);
    expectClose(sh.y[i], single.y[i], 2 * t, `sharded y[${i}] vs single batch ${what}`);
  }
  for (let c = 0; c < d.C; c++) {
    const fc_ = f[c];
    const mErr = meanErrMerged(fc_, kShards), vErr = m2ErrMerged(fc_, kShards);
    expectClose(sh.global.mean[c], o.mean[c], mErr, `merged mean[${c}] ${what}`);
    expectClose(sh.global.m2[c], exact.m2[c], vErr, `merged m2[${c}] ${what}`);
    expectClose(sh.saveMean[c], o.mean[c], 2 * ulp32(o.mean[c]) + mErr, `saveMean[${c}] ${what}`);
    const v = fc_.m2 / fc_.n;
    const tInv = ulp32(o.invStd[c]) + 0.5 * o.invStd[c] * (vErr / fc_.n) / (v + k.eps);
    expectClose(sh.saveInvStd[c], o.invStd[c], tInv, `saveInvStd[${c}] ${what}`);
    if (sh.rm && sh.rv && o.runningMean && o.runningVar && rm1 && rv1) {
      const divisor = k.unbiased ? fc_.n - 1 : fc_.n;
      const batchVar = fc_.m2 / divisor;
      const tRm = ulp32(o.runningMean[c]) / 2 + k.momentum * mErr + 8 * U64 * (Math.abs(d.runningMean![c]) + Math.abs(o.mean[c]));
      const tRv = ulp32(o.runningVar[c]) / 2 + (k.momentum * vErr) / divisor + 8 * U64 * (d.runningVar![c] + batchVar);
      expectClose(sh.rm[c], o.runningMean[c], tRm, `runningMean[${c}] ${what}`);
      expectClose(sh.rv[c], o.runningVar[c], tRv, `runningVar[${c}] ${what}`);
      // The single batch obeys the same bounds with k = 1 (smaller), so the two are within twice them.
      expectClose(sh.rm[c], rm1[c], 2 * tRm, `runningMean[${c}] vs single ${what}`);
      expectClose(sh.rv[c], rv1[c], 2 * tRv, `runningVar[${c}] vs single ${what}`);
    }
  }

  // Backward vs the oracle and vs the single-batch engine.backward, both given the sharded statistics.
  const ob = oracleBackward(d.dy, d.x, k.shape, { layout: k.layout, training: true, weight: d.weight, mean: sh.saveMean, invStd: sh.saveInvStd });
  const sb = engine.backward(d.dy, d.x, k.shape, {
    layout: k.layout, training: true, weight: d.weight, saveMean: sh.saveMean, saveInvStd: sh.saveInvStd,
  });
  const bf = backwardFacts(d.dy, d.x, k.shape, k.layout, d.weight, sh.saveMean, sh.saveInvStd);
  for (let i = 0; i < d.size; i++) {
    const c = ch(i);
    const t = tolDx(d.dy[i], d.x[i] - sh.saveMean[c], bf[c]);
    expectClose(sh.dx[i], ob.dx[i], t, `sharded dx[${i}] vs oracle ${what}`);
    expectClose(sh.dx[i], sb.dx[i], 2 * t, `sharded dx[${i}] vs single batch ${what}`);
  }
  for (let c = 0; c < d.C; c++) {
    const tw = tolDweight(ob.dweight[c], bf[c]), tb = tolDbias(ob.dbias[c], bf[c]);
    expectClose(sh.dweight[c], ob.dweight[c], tw, `dweight[${c}] ${what}`);
    expectClose(sh.dbias[c], ob.dbias[c], tb, `dbias[${c}] ${what}`);
    expectClose(sh.dweight[c], sb.dweight[c], 2 * tw, `dweight[${c}] vs single ${what}`);
    expectClose(sh.dbias[c], sb.dbias[c], 2 * tb, `dbias[${c}] vs single ${what}`);
  }
}

/** k positive sizes adding up to N (uneven), from a seed. */
function unevenSizes(N: number, k: number, seed: number): number[] {
  const next = rng(seed);
  const sizes = new Array<number>(k).fill(1);
  for (let r = 0; r < N - k; r++) sizes[Math.floor(next() * k)]++;
  return sizes;
}

function permutation(k: number, seed: number): number[] {
  const next = rng(seed ^ 0x5bd1e995);
  const p = [...Array(k).keys()];
  for (let i = k - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const dim = fc.oneof(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9), fc.integer({ min: 1, max: 13 }));
const caseArb: fc.Arbitrary<Case> = fc.record({
  layout: fc.constantFrom<Layout>('NCHW', 'NHWC'),
  N: fc.integer({ min: 1, max: 12 }),
  C: fc.oneof(fc.constantFrom(1, 3, 4, 5, 8, 17), fc.integer({ min: 1, max: 24 })),
  spatial: fc.integer({ min: 0, max: 2 }).chain((n) => fc.array(dim, { minLength: n, maxLength: n })),
  kWanted: fc.integer({ min: 1, max: 8 }),
  tree: fc.boolean(),
  affine: fc.boolean(),
  running: fc.boolean(),
  momentum: fc.oneof(fc.constantFrom(0, 0.1, 1), fc.double({ min: 0, max: 1, noNaN: true })),
  unbiased: fc.boolean(),
  eps: fc.constantFrom(1e-5, 1e-3, 0.1),
  zeroCopy: fc.boolean(),
  inPlace: fc.boolean(),
  seed: fc.integer(),
}).filter(({ N, C, spatial }) => N * product(spatial) >= 2 && N * C * product(spatial) <= 20000)
  .map(({ N, C, spatial, kWanted, layout, ...rest }) => {
    const k = Math.min(kWanted, N);
    return {
      ...rest, layout, shape: layout === 'NCHW' ? [N, C, ...spatial] : [N, ...spatial, C],
      sizes: unevenSizes(N, k, rest.seed), order: permutation(k, rest.seed),
    };
  });

describe('mergeMoments (float64, Chan et al.)', () => {
  it('merging the oracle moments of any split gives the whole batch\'s moments', () => {
    fc.assert(fc.property(caseArb, (k) => {
      const d = makeData(k);
      const whole = oracleMoments(d.x, k.shape, k.layout);
      const parts = shardsOf(d.x, k.shape, k.sizes).map((x, s) => oracleMoments(x, [k.sizes[s], ...k.shape.slice(1)], k.layout));
      const merged = k.tree ? reduceMoments(parts) : parts.slice(1).reduce((a, b) => mergeMoments(a, b), parts[0] as Moments);
      const f = facts(d.x, k.shape, k.layout, whole.mean);
      expect(merged.count).toBe(whole.count);
      for (let c = 0; c < d.C; c++) {
        // Exact inputs (compensated sums): only the merges' roundings, ~3 per merge on terms <= |mean| + 2·maxDev,
        // and for m2 a sum of non-negative terms (relative) plus δ's error through δ².
        const tMean = 8 * kOf(k) * U64 * (Math.abs(whole.mean[c]) + 2 * f[c].maxDev);
        const tM2 = 8 * kOf(k) * U64 * (whole.m2[c] + f[c].n * f[c].maxDev * (Math.abs(whole.mean[c]) + f[c].maxDev));
        expectClose(merged.mean[c], whole.mean[c], tMean, `mean[${c}] ${JSON.stringify(k)}`);
        expectClose(merged.m2[c], whole.m2[c], tM2, `m2[${c}] ${JSON.stringify(k)}`);
      }
    }), { numRuns: 100 });
  });

  it('count 0 is the identity; channel counts must agree; inputs are not modified', () => {
    const a = { count: 3, mean: Float64Array.of(1, 2), m2: Float64Array.of(0.5, 4) };
    const empty = { count: 0, mean: new Float64Array(2), m2: new Float64Array(2) };
    expect(mergeMoments(a, empty)).toEqual(a);
    expect(mergeMoments(empty, a)).toEqual(a);
    const b = { count: 1, mean: [5, -2], m2: [0, 0] }; // plain arrays (e.g. from JSON) are accepted
    const m = mergeMoments(a, b);
    // {x: mean 1 over 3, then 5}: mean 2, m2 = 0.5 + 0 + 16·3·1/4 = 12.5; channel 1: mean 1, m2 = 4 + 16·3/4 = 16.
    expect(m.count).toBe(4);
    expect(Array.from(m.mean)).toEqual([2, 1]);
    expect(Array.from(m.m2)).toEqual([12.5, 16]);
    expect(Array.from(a.mean)).toEqual([1, 2]);
    expect(() => mergeMoments(a, { count: 1, mean: [1], m2: [0] })).toThrow(ShapeError);
    expect(() => mergeMoments(a, { count: -1, mean: [1, 1], m2: [0, 0] })).toThrow(InvalidArgumentError);
    expect(() => mergeMoments(a, { count: 1, mean: [1, 1], m2: [0, -1] })).toThrow(/b\.m2\[1\]: expected a sum of squares >= 0/);
    expect(() => mergeMoments(a, null as unknown as Moments)).toThrow(InvalidArgumentError);
    expect(() => reduceMoments([])).toThrow(InvalidArgumentError);
    expect(mergeBackwardSums({ sumDy: [1, 2], sumDyXhat: [3, 4] }, { sumDy: Float64Array.of(10, 20), sumDyXhat: [30, 40] }))
      .toEqual({ sumDy: Float64Array.of(11, 22), sumDyXhat: Float64Array.of(33, 44) });
    expect(() => mergeBackwardSums({ sumDy: [1, 2], sumDyXhat: [3, 4] }, { sumDy: [1], sumDyXhat: [1] })).toThrow(ShapeError);
  });
});

function kOf(k: Case): number {
  return k.sizes.length;
}

describe.each(BUILDS)('synchronized batch norm, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it('engine.moments equals the oracle\'s moments within the statistics bounds', () => {
    fc.assert(fc.property(caseArb, (k) => {
      const d = makeData(k);
      const m = engine.moments(d.x, k.shape, { layout: k.layout });
      const o = oracleMoments(d.x, k.shape, k.layout);
      const f = facts(d.x, k.shape, k.layout, o.mean);
      expect(m.count).toBe(o.count);
      expect(m.mean).toBeInstanceOf(Float64Array);
      for (let c = 0; c < d.C; c++) {
        expectClose(m.mean[c], o.mean[c], meanErrMerged(f[c], 1), `mean[${c}]`);
        expectClose(m.m2[c], o.m2[c], m2ErrMerged(f[c], 1), `m2[${c}]`);
      }
    }), { numRuns: 40 });
  });

  it('k shards (1..8, uneven, any merge order) give the single-batch forward, running stats and backward', () => {
    fc.assert(fc.property(caseArb, (k) => checkCase(engine, k)), { numRuns: build === 'debug' ? 40 : 80 });
  });

  it('every k from 1 to 8 on the same batch (NCHW and NHWC)', () => {
    for (const layout of ['NCHW', 'NHWC'] as const) {
      for (let kk = 1; kk <= 8; kk++) {
        const seed = 1000 * kk + (layout === 'NCHW' ? 1 : 2);
        checkCase(engine, {
          layout, shape: layout === 'NCHW' ? [13, 6, 3, 5] : [13, 3, 5, 6], sizes: unevenSizes(13, kk, seed),
          order: permutation(kk, seed), tree: kk % 2 === 0, affine: true, running: true, momentum: 0.1, unbiased: true,
          eps: 1e-5, zeroCopy: kk % 3 === 0, inPlace: kk % 2 === 1, seed,
        });
      }
    }
  });

  it('with one shard, forwardWithMoments / backwardWithSums reproduce forward / backward', () => {
    const shape = [4, 5, 6], layout = 'NCHW' as const;
    const d = makeData({ layout, shape, sizes: [4], order: [0], tree: true, affine: true, running: true, momentum: 0.3,
      unbiased: true, eps: 1e-5, zeroCopy: false, inPlace: false, seed: 7 });
    const rmA = d.runningMean!.slice(), rvA = d.runningVar!.slice(), rmB = rmA.slice(), rvB = rvA.slice();
    const a = engine.forward(d.x, shape, { training: true, weight: d.weight, bias: d.bias, runningMean: rmA, runningVar: rvA, momentum: 0.3 });
    const b = engine.forwardWithMoments(d.x, shape, {
      moments: engine.moments(d.x, shape), weight: d.weight, bias: d.bias, runningMean: rmB, runningVar: rvB, momentum: 0.3,
    });
    expect(b.saveMean).toEqual(a.saveMean);
    expect(rmB).toEqual(rmA);
    expect(rvB).toEqual(rvA);
    const o = oracleForward(d.x, shape, { training: true, weight: d.weight, bias: d.bias });
    for (let i = 0; i < d.size; i++) {
      const c = channelOf(shape, layout)(i);
      expectClose(b.y[i], a.y[i], 2 * tolY(o.y[i], d.weight![c], d.bias![c]), `y[${i}]`);
    }
    const ga = engine.backward(d.dy, d.x, shape, { training: true, weight: d.weight, saveMean: b.saveMean, saveInvStd: b.saveInvStd });
    const sums = engine.backwardReduce(d.dy, d.x, shape, { saveMean: b.saveMean, saveInvStd: b.saveInvStd });
    const gb = engine.backwardWithSums(d.dy, d.x, shape, {
      weight: d.weight, saveMean: b.saveMean, saveInvStd: b.saveInvStd, ...sums, count: 24,
    });
    expect(gb.dbias).toEqual(ga.dbias);
    expect(gb.dweight).toEqual(ga.dweight);
    const bf = backwardFacts(d.dy, d.x, shape, layout, d.weight, b.saveMean, b.saveInvStd);
    for (let i = 0; i < d.size; i++) {
      const c = channelOf(shape, layout)(i);
      expectClose(gb.dx[i], ga.dx[i], 2 * tolDx(d.dy[i], d.x[i] - b.saveMean[c], bf[c]), `dx[${i}]`);
    }
  });

  it('bad arguments throw typed errors naming the argument and touch nothing', () => {
    const shape = [3, 2, 4];
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const m = engine.moments(x, shape);
    const global = mergeMoments(m, m); // count 24
    const rm = Float32Array.of(0.5, -0.5), rv = Float32Array.of(1, 2);
    const before = [rm.slice(), rv.slice(), x.slice()];
    const fwd = (o: Record<string, unknown>) => () => engine.forwardWithMoments(x, shape, { moments: global, runningMean: rm, runningVar: rv, ...o } as never);
    const cases: Array<[() => unknown, typeof BatchNormError, RegExp]> = [
      [fwd({ moments: undefined }), InvalidArgumentError, /^opts\.moments: expected \{ count, mean, m2 \}/],
      [fwd({ moments: { ...global, count: 11 } }), InvalidArgumentError, /^opts\.moments\.count: expected an integer >= 12 .*this shard's 12/],
      [fwd({ moments: { ...global, count: 12.5 } }), InvalidArgumentError, /^opts\.moments\.count/],
      [fwd({ moments: { ...global, mean: new Float64Array(3) } }), ShapeError, /^opts\.moments\.mean: expected length 2/],
      [fwd({ moments: { ...global, m2: [1, -1] } }), InvalidArgumentError, /^opts\.moments\.m2\[1\]/],
      [fwd({ moments: { ...global, mean: ['a', 1] } }), InvalidArgumentError, /^opts\.moments\.mean\[0\]: expected a number/],
      [fwd({ runningVar: null }), InvalidArgumentError, /^opts\.runningVar/],
      [fwd({ runningMean: x.subarray(0, 2) }), InvalidArgumentError, /^opts\.runningMean: expected memory disjoint from x/],
      [fwd({ momentum: 2 }), InvalidArgumentError, /^opts\.momentum/],
      [fwd({ eps: 0 }), InvalidArgumentError, /^opts\.eps/],
      [fwd({ weight: new Float32Array(3) }), ShapeError, /^opts\.weight/],
      [() => engine.forwardWithMoments(Float32Array.of(1, 2), [1, 2, 1], { moments: { count: 1, mean: [1, 2], m2: [0, 0] } }),
        InvalidArgumentError, /^opts\.moments\.count: expected an integer >= 2 \(the global values per channel: more than 1 when training/],
      [() => engine.moments(x, [3, 2, 5]), ShapeError, /^x: expected length 30/],
      [() => engine.moments(x, shape, { layout: 'NWHC' as never }), InvalidArgumentError, /^opts\.layout/],
      [() => engine.backwardReduce(x, x, shape, { saveMean: new Float32Array(2), saveInvStd: new Float32Array(3) }), ShapeError, /^opts\.saveInvStd/],
      [() => engine.backwardWithSums(x, x, shape, {
        saveMean: new Float32Array(2), saveInvStd: new Float32Array(2), sumDy: [0, 0], sumDyXhat: [0], count: 24,
      }), ShapeError, /^opts\.sumDyXhat: expected length 2/],
      [() => engine.backwardWithSums(x, x, shape, {
        saveMean: new Float32Array(2), saveInvStd: new Float32Array(2), sumDy: [0, 0], sumDyXhat: [0, 0], count: 5,
      }), InvalidArgumentError, /^opts\.count: expected an integer >= 12/],
      [() => engine.backwardWithSums(x, x, shape, {
        saveMean: new Float32Array(2), saveInvStd: new Float32Array(2), sumDy: [0, 0], sumDyXhat: [0, 0], count: 24, out: x.subarray(1, 25),
      } as never), ShapeError, /^opts\.out/],
    ];
    for (const [call, cls, message] of cases) {
      let thrown: unknown = null;
      try { call(); } catch (error) { thrown = error; }
      expect(thrown, String(message)).toBeInstanceOf(cls);
      expect((thrown as Error).message).toMatch(message);
      expect([rm, rv, x]).toEqual(before);
      expect(engine.info().bytesInUse).toBe(0);
    }
  });
});

describe('examples/sync-bn: 4 worker_threads exchanging moments over MessageChannel', () => {
  for (const layout of ['NCHW', 'NHWC'] as const) {
    it(`matches the single-process result (${layout})`, async () => {
      const r = await runSyncExample({ layout });
      expect(r.shardSizes.length).toBe(4);
      expect(r.workersAgree).toBe(true);
      const { x, dy, weight, bias, runningMean, runningVar, momentum, eps } = r.inputs;
      const o = oracleForward(x, r.shape, { layout, training: true, weight, bias, runningMean, runningVar, momentum, eps });
      const f = facts(x, r.shape, layout, o.mean);
      const ch = channelOf(r.shape, layout);
      for (let i = 0; i < x.length; i++) {
        const t = tolY(o.y[i], weight[ch(i)], bias[ch(i)]);
        expectClose(r.sharded.y[i], o.y[i], t, `y[${i}]`);
        expectClose(r.sharded.y[i], r.single.y[i], 2 * t, `y[${i}] vs single`);
      }
      for (let c = 0; c < weight.length; c++) {
        const n = f[c].n;
        const tRm = ulp32(o.runningMean![c]) / 2 + momentum * meanErrMerged(f[c], 4) + 8 * U64 * (Math.abs(runningMean[c]) + Math.abs(o.mean[c]));
        const tRv = ulp32(o.runningVar![c]) / 2 + (momentum * m2ErrMerged(f[c], 4)) / (n - 1) + 8 * U64 * (runningVar[c] + f[c].m2 / (n - 1));
        expectClose(r.sharded.runningMean[c], o.runningMean![c], tRm, `runningMean[${c}]`);
        expectClose(r.sharded.runningVar[c], o.runningVar![c], tRv, `runningVar[${c}]`);
        expectClose(r.sharded.runningMean[c], r.single.runningMean[c], 2 * tRm, `runningMean[${c}] vs single`);
        expectClose(r.sharded.runningVar[c], r.single.runningVar[c], 2 * tRv, `runningVar[${c}] vs single`);
      }
      // Backward against the oracle with the statistics each run saved.
      for (const [name, run] of [['sharded', r.sharded], ['single', r.single]] as const) {
        const ob = oracleBackward(dy, x, r.shape, { layout, training: true, weight, mean: run.saveMean, invStd: run.saveInvStd });
        const bf = backwardFacts(dy, x, r.shape, layout, weight, run.saveMean, run.saveInvStd);
        for (let i = 0; i < x.length; i++) {
          expectClose(run.dx[i], ob.dx[i], tolDx(dy[i], x[i] - run.saveMean[ch(i)], bf[ch(i)]), `${name} dx[${i}]`);
        }
        for (let c = 0; c < weight.length; c++) {
          expectClose(run.dweight[c], ob.dweight[c], tolDweight(ob.dweight[c], bf[c]), `${name} dweight[${c}]`);
          expectClose(run.dbias[c], ob.dbias[c], tolDbias(ob.dbias[c], bf[c]), `${name} dbias[${c}]`);
        }
      }
    }, 60_000);
  }
});
