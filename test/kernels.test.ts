// Kernel contracts (assembly/*.ts), called through the raw ABI on every build, against
// references computed here. Shapes straddle the SIMD tiles (4 lanes, 8-value unroll, the
// NHWC period lcm(C, 4)); data have per-channel offsets and spreads over many magnitudes.
//
// Tolerances:
// - normalize and backward dx: the kernels promise the same f32 operations in the same order
//   in every lane, tail and build, so the reference emulates them with Math.fround at each
//   step and the results must be bit-identical.
// - stats and backward reductions accumulate in f64: a recursive sum of n terms is within
//   γ_n · Σ|terms| (Higham, Accuracy and Stability, 4.2); the shifted variance adds the
//   cancellation term, bounded with the largest deviation from the mean (see stats.ts).
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Engine } from '../src/engine.js';
import { BUILDS, loadDebugEngine, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { gamma64, gauss, rng } from './helpers/numeric.js';
import { STATS_BLOCK, statsBlocks, workspaceBytes } from '../src/exec.js';
import { geometry } from '../src/layout.js';

const fr = Math.fround;

/** Raw kernel harness: places arrays in the engine's memory and reads them back. */
class Harness {
  private ptrs: number[] = [];
  constructor(readonly engine: Engine) {}
  f32(data: ArrayLike<number>): number {
    const p = this.engine.arena.alloc(Math.max(data.length, 1) * 4);
    this.ptrs.push(p);
    new Float32Array(this.engine.arena.buffer, p, data.length).set(data);
    return p;
  }
  bytes(n: number): number {
    const p = this.engine.arena.alloc(n);
    this.ptrs.push(p);
    return p;
  }
  readF32(p: number, n: number): Float32Array {
    return new Float32Array(this.engine.arena.buffer, p, n).slice();
  }
  readF64(p: number, n: number): Float64Array {
    return new Float64Array(this.engine.arena.buffer, p, n).slice();
  }
  done(): void {
    for (const p of this.ptrs) this.engine.arena.release(p);
    this.ptrs = [];
  }
}

interface Case { layout: 'NCHW' | 'NHWC'; outer: number; C: number; inner: number; seed: number }

/** outer x C x inner for NCHW; NHWC has inner = 1 and rows = outer. */
const caseArb: fc.Arbitrary<Case> = fc.oneof(
  fc.record({
    layout: fc.constant('NCHW' as const),
    outer: fc.integer({ min: 1, max: 3 }),
    C: fc.integer({ min: 1, max: 9 }),
    inner: fc.oneof(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33), fc.integer({ min: 1, max: 300 })),
    seed: fc.integer(),
  }),
  fc.record({
    layout: fc.constant('NHWC' as const),
    outer: fc.oneof(fc.constantFrom(1, 2, 3, 4, 5), fc.integer({ min: 1, max: 200 })),
    C: fc.oneof(fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17), fc.integer({ min: 1, max: 70 })),
    inner: fc.constant(1),
    seed: fc.integer(),
  }),
  // Rows a multiple of 4 KiB apart (C = 1024, 2048) or half of it: the channel-last loops take
  // fewer rows per group and per step there (period.ts groupRowsOf, backward dx); odd row
  // counts leave single rows after the four-row steps.
  fc.record({
    layout: fc.constant('NHWC' as const),
    outer: fc.integer({ min: 1, max: 11 }),
    C: fc.constantFrom(512, 1024, 2048),
    inner: fc.constant(1),
    seed: fc.integer(),
  }),
);

function channelOf(k: Case, i: number): number {
  return Math.floor(i / k.inner) % k.C;
}

/** Per-channel offset and spread: |mean|/std up to 1e3, std from 1e-3 to 1e3. */
function data(k: Case, salt: number): { x: Float32Array; mean: Float32Array } {
  const next = rng(k.seed ^ salt);
  const g = gauss(next);
  const size = k.outer * k.C * k.inner;
  const center = Array.from({ length: k.C }, () => (next() - 0.5) * 2 * 10 ** (3 * next()));
  const spread = Array.from({ length: k.C }, () => 10 ** (6 * next() - 3));
  const x = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const c = channelOf(k, i);
    x[i] = center[c] + spread[c] * g();
  }
  return { x, mean: Float32Array.from(center) };
}

function perChannel(k: Case, f: (c: number, i: number) => void): void {
  const size = k.outer * k.C * k.inner;
  for (let i = 0; i < size; i++) f(channelOf(k, i), i);
}

/** Per-channel mean and m2 (two passes, compensated sums: exact to f64 rounding here). */
function exactMoments(k: Case, x: Float32Array): { mean: number[]; m2: number[] } {
  const n = k.outer * k.inner;
  const sum = (term: (c: number, i: number) => number) => {
    const s = new Float64Array(k.C), comp = new Float64Array(k.C);
    perChannel(k, (c, i) => {
      const v = term(c, i), t = s[c] + v;
      comp[c] += Math.abs(s[c]) >= Math.abs(v) ? (s[c] - t) + v : (v - t) + s[c];
      s[c] = t;
    });
    return Array.from(s, (v, c) => v + comp[c]);
  };
  const mean = sum((_, i) => x[i]).map((s) => s / n);
  return { mean, m2: sum((c, i) => (x[i] - mean[c]) ** 2) };
}

/**
 * Checks kernel statistics against an exact-enough reference (compensated sums): the kernels
 * accumulate in f64 with a shift K that is a sample of the channel (|x − K| <= 2·maxDev), so
 * mean is within γ·(|mean| + 6·maxDev) and m2 within γ·(8·m2 + 16·n·maxDev²), γ = γ_{n+4}
 * (Higham 4.2 for the sums, plus the cancellation s2 − s1²/n). Summation order is free.
 */
function expectStatsWithinBound(k: Case, x: Float32Array, mean: ArrayLike<number>, m2: ArrayLike<number>): void {
  const n = k.outer * k.inner;
  const sum = new Float64Array(k.C), comp = new Float64Array(k.C);
  perChannel(k, (c, i) => {
    const t = sum[c] + x[i];
    comp[c] += Math.abs(sum[c]) >= Math.abs(x[i]) ? (sum[c] - t) + x[i] : (x[i] - t) + sum[c];
    sum[c] = t;
  });
  const ref = Array.from(sum, (s, c) => (s + comp[c]) / n);
  const dev = new Float64Array(k.C), maxDev = new Float64Array(k.C);
  perChannel(k, (c, i) => {
    const d = x[i] - ref[c];
    dev[c] += d * d;
    maxDev[c] = Math.max(maxDev[c], Math.abs(d));
  });
  const g = gamma64(n + 4);
  for (let c = 0; c < k.C; c++) {
    const tolMean = g * (Math.abs(ref[c]) + 6 * maxDev[c]);
    const tolM2 = g * (8 * dev[c] + 16 * n * maxDev[c] ** 2);
    expect(Math.abs(mean[c] - ref[c]), `mean c=${c} ${JSON.stringify(k)}`).toBeLessThanOrEqual(tolMean);
    expect(Math.abs(m2[c] - dev[c]), `m2 c=${c} ${JSON.stringify(k)}`).toBeLessThanOrEqual(tolM2);
    expect(m2[c]).toBeGreaterThanOrEqual(0);
  }
}

const runs = { numRuns: 150 };

/** The statistics partition of stats.ts, written out: blocks per channel and each block's count. */
function partition(k: Case, block: number): number[] {
  const counts: number[] = [];
  if (k.layout === 'NHWC') {
    for (let r = 0; r < k.outer; r += block) counts.push(Math.min(block, k.outer - r));
    return counts;
  }
  const P = k.inner >= block ? 1 : Math.floor(block / k.inner);
  for (let o = 0; o < k.outer; o += P) {
    for (let i = 0; i < k.inner; i += block) counts.push(Math.min(P, k.outer - o) * Math.min(block, k.inner - i));
  }
  return counts;
}

/**
 * Runs the layout's statistics kernel over blocks [0, blocks) in the calls that `cuts` (sorted
 * block indices) delimit, then mergeMomentsF64. Returns the partials and the merged moments.
 */
function stats(h: Harness, k: Case, x: Float32Array, block: number, cuts: number[] = []) {
  const blocks = partition(k, block).length;
  const px = h.f32(x), pp = h.bytes(32 * k.C * blocks), pw = h.bytes(workspaceBytes(k.C)), pm = h.bytes(16 * k.C);
  const ks = h.engine.kernels;
  const edges = [0, ...cuts, blocks];
  for (let i = 0; i + 1 < edges.length; i++) {
    if (k.layout === 'NCHW') ks.statsNchwF32(px, k.outer, k.C, k.inner, block, edges[i], edges[i + 1], pp);
    else ks.statsNhwcF32(px, k.outer, k.C, block, edges[i], edges[i + 1], pp, pw);
  }
  ks.mergeMomentsF64(pp, blocks, k.C, pm, pm + 8 * k.C);
  const merged = h.readF64(pm, 2 * k.C);
  return { partials: h.readF64(pp, 4 * k.C * blocks), mean: merged.subarray(0, k.C), m2: merged.subarray(k.C), blocks };
}

/** Chan's update in block order, as mergeMomentsF64 (stats.ts) computes it: the same IEEE operations. */
function chanMerge(partials: Float64Array, blocks: number, C: number): { mean: number[]; m2: number[] } {
  const mean: number[] = [], m2: number[] = [];
  const at = (b: number, field: number, c: number) => partials[(4 * b + field) * C + c];
  for (let c = 0; c < C; c++) {
    const k = at(0, 1, c); // every mean relative to block 0's pivot
    let n = at(0, 0, c), mu = at(0, 2, c), q = at(0, 3, c);
    for (let b = 1; b < blocks; b++) {
      const nb = at(b, 0, c), mb = (at(b, 1, c) - k) + at(b, 2, c), qb = at(b, 3, c);
      const total = n + nb, w = nb / total, d = mb - mu;
      q = (q + qb) + (d * d) * (n * w);
      mu = Number.isFinite(d) ? mu + d * w : mu + mb;
      n = total;
    }
    mean.push(k + mu);
    m2.push(q);
  }
  return { mean, m2 };
}

const blockArb = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 100, STATS_BLOCK);

/** The block of flat index i in the partition of stats.ts (see `partition`). */
function blockOf(k: Case, block: number, i: number): number {
  if (k.layout === 'NHWC') return Math.floor(Math.floor(i / k.C) / block);
  const S = k.inner > block ? Math.ceil(k.inner / block) : 1, P = k.inner >= block ? 1 : Math.floor(block / k.inner);
  const o = Math.floor(i / (k.C * k.inner)), j = i % k.inner;
  return Math.floor(o / P) * S + Math.floor(j / block);
}

interface Grads { dy: Float32Array; x: Float32Array; mean: Float32Array; y: Float32Array | null }

/**
 * dy, x, mean and (relu) a forward output y with zeros, negatives and positives. dy spans
 * 2^-40 to 2^40, so that the f64 sums round and a change of summation order changes bits.
 */
function grads(k: Case, salt: number, relu: boolean): Grads {
  const { x, mean } = data(k, salt);
  const next = rng(k.seed ^ (salt + 1));
  const g = gauss(next);
  const dy = Float32Array.from(x, () => g() * 2 ** Math.floor(80 * next() - 40));
  const y = relu ? Float32Array.from(x, (_, i) => (i % 3 === 0 ? 0 : g())) : null;
  return { dy, x, mean, y };
}

/**
 * Runs the layout's backward reduce over blocks [0, blocks) in the calls that `cuts` (sorted
 * block indices) delimit, then mergeSumsF64. Returns the partials and the merged sums.
 */
function backwardSums(h: Harness, k: Case, a: Grads, block: number, cuts: number[] = []) {
  const blocks = partition(k, block).length;
  const pd = h.f32(a.dy), px = h.f32(a.x), pm = h.f32(a.mean), py = a.y ? h.f32(a.y) : 0;
  const pp = h.bytes(16 * k.C * blocks), pw = h.bytes(workspaceBytes(k.C)), ps = h.bytes(16 * k.C);
  const ks = h.engine.kernels;
  const edges = [0, ...cuts, blocks];
  for (let i = 0; i + 1 < edges.length; i++) {
    if (k.layout === 'NCHW') ks.backwardReduceNchwF32(pd, px, k.outer, k.C, k.inner, pm, block, edges[i], edges[i + 1], pp, py);
    else ks.backwardReduceNhwcF32(pd, px, k.outer, k.C, pm, block, edges[i], edges[i + 1], pp, pw, py);
  }
  ks.mergeSumsF64(pp, blocks, k.C, ps, ps + 8 * k.C);
  const merged = h.readF64(ps, 2 * k.C);
  return { partials: h.readF64(pp, 2 * k.C * blocks), sumDy: merged.subarray(0, k.C), sumDyXmu: merged.subarray(k.C), blocks };
}

/** mergeSumsF64 (backward.ts) in JS: each channel's partials added left to right in block order. */
function blockOrderSums(partials: Float64Array, blocks: number, C: number): { sumDy: number[]; sumDyXmu: number[] } {
  const sumDy: number[] = [], sumDyXmu: number[] = [];
  for (let c = 0; c < C; c++) {
    let s1 = partials[c], s2 = partials[C + c];
    for (let b = 1; b < blocks; b++) {
      s1 += partials[2 * b * C + c];
      s2 += partials[(2 * b + 1) * C + c];
    }
    sumDy.push(s1);
    sumDyXmu.push(s2);
  }
  return { sumDy, sumDyXmu };
}

/**
 * Reference sums per (block, channel): Σg, Σg·(x − mean) and their Σ|terms|, with g masked by y.
 * blocks = 1 with block = Infinity gives the per-channel sums.
 */
function referenceSums(k: Case, a: Grads, block: number, blocks: number) {
  const n = blocks * k.C;
  const r1 = new Float64Array(n), r2 = new Float64Array(n), a1 = new Float64Array(n), a2 = new Float64Array(n);
  perChannel(k, (c, i) => {
    const at = (block === Infinity ? 0 : blockOf(k, block, i)) * k.C + c;
    const gi = a.y && a.y[i] <= 0 ? 0 : a.dy[i];
    const t = gi * (a.x[i] - a.mean[c]); // exact: f32 operands, 53-bit product of 24-bit values
    r1[at] += gi; a1[at] += Math.abs(gi);
    r2[at] += t; a2[at] += Math.abs(t);
  });
  return { r1, r2, a1, a2 };
}

describe.each(BUILDS)('kernels, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it('stats: mean and m2 in f64 within the summation bound', () => {
    fc.assert(fc.property(caseArb, (k) => {
      const h = new Harness(engine);
      const { x } = data(k, 1);
      const n = k.outer * k.inner;
      const { mean, m2 } = stats(h, k, x, STATS_BLOCK);
      h.done();
      expectStatsWithinBound(k, x, mean, m2);
    }), runs);
  });

  it('stats: every block size; ranges split over several calls give the same bits; the merge is Chan in block order', () => {
    fc.assert(fc.property(caseArb, blockArb, fc.array(fc.nat(), { maxLength: 3 }), (k, block, rawCuts) => {
      const h = new Harness(engine);
      const { x } = data(k, 12);
      const counts = partition(k, block);
      const g = geometry(k.layout === 'NHWC' ? [k.outer, k.C] : [k.outer, k.C, k.inner], k.layout);
      expect(statsBlocks(g, block), 'src/call.ts statsBlocks').toBe(counts.length);
      const cuts = rawCuts.map((c) => c % (counts.length + 1)).sort((a, b) => a - b);
      const one = stats(h, k, x, block), split = stats(h, k, x, block, cuts);
      h.done();
      const at = `${JSON.stringify(k)} block=${block} cuts=${cuts}`;
      for (let b = 0; b < counts.length; b++) {
        for (let c = 0; c < k.C; c++) expect(one.partials[4 * k.C * b + c], `count b=${b} c=${c} ${at}`).toBe(counts[b]);
      }
      one.partials.forEach((v, i) => {
        if (!Object.is(split.partials[i], v)) throw new Error(`partial ${i}: ${v} in one call, ${split.partials[i]} split ${at}`);
      });
      const want = chanMerge(one.partials, counts.length, k.C);
      for (let c = 0; c < k.C; c++) {
        if (!Object.is(one.mean[c], want.mean[c]) || !Object.is(one.m2[c], want.m2[c])) {
          throw new Error(`merge c=${c}: (${one.mean[c]}, ${one.m2[c]}) vs Chan (${want.mean[c]}, ${want.m2[c]}) ${at}`);
        }
      }
      expectStatsWithinBound(k, x, one.mean, one.m2);
    }), runs);
  });

  it('stats: an outlier first, a sparse post-ReLU channel or a huge offset cost no accuracy (bound independent of the pivot)', () => {
    // Per block of n_b <= B values the shifted sums' error is γ·(8·m2_b + 16·n_b·maxDev_b²) with
    // maxDev_b² <= m2_b (K is a value of the block), so <= 16·B·γ_{B+4}·m2_b; Σ m2_b <= m2. The
    // merge adds three roundings per block, γ_{3·blocks+3}·m2; block means are pivot + offset,
    // so no rounding of |mean| enters δ: a bound that no pivot, no offset and no order of the
    // data can break.
    const kind = fc.constantFrom('outlier', 'sparse', 'offset');
    fc.assert(fc.property(caseArb, blockArb, kind, (k, block, what) => {
      const h = new Harness(engine);
      const next = rng(k.seed ^ 13);
      const g = gauss(next);
      const x = new Float32Array(k.outer * k.C * k.inner);
      const first = new Set<number>();
      perChannel(k, (c, i) => {
        const isFirst = !first.has(c);
        first.add(c);
        if (what === 'outlier') x[i] = isFirst ? 1e4 * (1 + c) : g();
        else if (what === 'sparse') x[i] = isFirst ? 3.7 : next() < 0.01 ? Math.abs(g()) : 0;
        else x[i] = 1e6 * (c + 1) + 0.1 * g() * (isFirst ? 1e3 : 1);
      });
      const { mean, m2, blocks } = stats(h, k, x, block);
      h.done();
      expectStatsWithinBound(k, x, mean, m2);
      const n = k.outer * k.inner;
      const ref = exactMoments(k, x);
      for (let c = 0; c < k.C; c++) {
        const B = Math.min(block, n);
        const tol = (16 * B * gamma64(B + 4) + gamma64(3 * blocks + 3)) * ref.m2[c] + 1e-300;
        expect(Math.abs(m2[c] - ref.m2[c]), `m2 c=${c} ${what} block=${block} ${JSON.stringify(k)}`).toBeLessThanOrEqual(tol);
      }
    }), runs);
  });

  it('normalize: bit-identical to (x − meanHi)·scale + shift in f32 (then ReLU), also in place', () => {
    fc.assert(fc.property(caseArb, fc.boolean(), fc.boolean(), (k, inPlace, relu) => {
      const h = new Harness(engine);
      const { x, mean } = data(k, 2);
      const next = rng(k.seed ^ 3);
      const hi = Float32Array.from(mean);
      const a = Float32Array.from({ length: k.C }, () => (next() - 0.5) * 4);
      const b = Float32Array.from({ length: k.C }, () => (next() - 0.5) * 4);
      const px = h.f32(x), py = inPlace ? px : h.bytes(4 * x.length);
      const ph = h.f32(hi), pa = h.f32(a), pb = h.f32(b), pw = h.bytes(workspaceBytes(k.C));
      const lower = relu ? 0 : -Infinity;
      if (k.layout === 'NCHW') engine.kernels.normalizeNchwF32(px, py, k.outer, k.C, k.inner, ph, pa, pb, lower);
      else engine.kernels.normalizeNhwcF32(px, py, k.outer, k.C, ph, pa, pb, pw, lower);
      const y = h.readF32(py, x.length);
      h.done();
      perChannel(k, (c, i) => {
        const r = fr(fr(fr(x[i] - hi[c]) * a[c]) + b[c]);
        const want = r < lower ? lower : r;
        if (!Object.is(y[i], want)) throw new Error(`y[${i}] c=${c}: expected ${want}, got ${y[i]} ${JSON.stringify(k)}`);
      });
    }), runs);
  });

  it('backward reduce: Σg and Σg·(x − mean) in f64 within the summation bound, g = dy or ReLU-masked dy', () => {
    fc.assert(fc.property(caseArb, fc.boolean(), (k, relu) => {
      const h = new Harness(engine);
      const a = grads(k, 4, relu);
      const { sumDy, sumDyXmu } = backwardSums(h, k, a, STATS_BLOCK);
      h.done();
      const { r1, r2, a1, a2 } = referenceSums(k, a, Infinity, 1);
      const gn = gamma64(k.outer * k.inner + 2);
      for (let c = 0; c < k.C; c++) {
        // Reference and kernel each within γ·Σ|terms| of the exact sum.
        expect(Math.abs(sumDy[c] - r1[c]), `sumDy c=${c} ${JSON.stringify(k)}`).toBeLessThanOrEqual(2 * gn * a1[c]);
        expect(Math.abs(sumDyXmu[c] - r2[c]), `sumDyXmu c=${c} ${JSON.stringify(k)}`).toBeLessThanOrEqual(4 * gn * a2[c]);
      }
    }), runs);
  });

  it('backward reduce: every block size; each partial is its block\'s sums; ranges split over several calls give the same bits; the merge is the block-order sum', () => {
    fc.assert(fc.property(caseArb, blockArb, fc.boolean(), fc.array(fc.nat(), { maxLength: 3 }), (k, block, relu, rawCuts) => {
      const h = new Harness(engine);
      const a = grads(k, 16, relu);
      const blocks = partition(k, block).length;
      const cuts = rawCuts.map((c) => c % (blocks + 1)).sort((p, q) => p - q);
      const one = backwardSums(h, k, a, block), split = backwardSums(h, k, a, block, cuts);
      h.done();
      const at = `${JSON.stringify(k)} block=${block} relu=${relu} cuts=${cuts}`;
      one.partials.forEach((v, i) => {
        if (!Object.is(split.partials[i], v)) throw new Error(`partial ${i}: ${v} in one call, ${split.partials[i]} split ${at}`);
      });
      const want = blockOrderSums(one.partials, blocks, k.C);
      for (let c = 0; c < k.C; c++) {
        if (!Object.is(one.sumDy[c], want.sumDy[c]) || !Object.is(one.sumDyXmu[c], want.sumDyXmu[c])) {
          throw new Error(`merge c=${c}: (${one.sumDy[c]}, ${one.sumDyXmu[c]}) vs block order (${want.sumDy[c]}, ${want.sumDyXmu[c]}) ${at}`);
        }
        if (!Object.is(split.sumDy[c], one.sumDy[c]) || !Object.is(split.sumDyXmu[c], one.sumDyXmu[c])) {
          throw new Error(`merged sums c=${c} differ between one call and split ${at}`);
        }
      }
      // Each block's partial within the summation bound of that block's terms (so the
      // partition is the one of stats.ts), and the merged sums within the channel's bound.
      const counts = partition(k, block);
      const per = referenceSums(k, a, block, blocks);
      for (let b = 0; b < blocks; b++) {
        const gb = gamma64(counts[b] + 2);
        for (let c = 0; c < k.C; c++) {
          const j = b * k.C + c;
          expect(Math.abs(one.partials[2 * b * k.C + c] - per.r1[j]), `Σg b=${b} c=${c} ${at}`).toBeLessThanOrEqual(2 * gb * per.a1[j]);
          expect(Math.abs(one.partials[(2 * b + 1) * k.C + c] - per.r2[j]), `Σg(x − mean) b=${b} c=${c} ${at}`).toBeLessThanOrEqual(4 * gb * per.a2[j]);
        }
      }
      const all = referenceSums(k, a, Infinity, 1);
      const gn = gamma64(k.outer * k.inner + blocks + 2);
      for (let c = 0; c < k.C; c++) {
        expect(Math.abs(one.sumDy[c] - all.r1[c]), `sumDy c=${c} ${at}`).toBeLessThanOrEqual(2 * gn * all.a1[c]);
        expect(Math.abs(one.sumDyXmu[c] - all.r2[c]), `sumDyXmu c=${c} ${at}`).toBeLessThanOrEqual(4 * gn * all.a2[c]);
      }
    }), runs);
  });

  it('backward reduce: the ReLU mask zeroes g where y <= 0 (also -0), keeps it where y > 0 or NaN', () => {
    fc.assert(fc.property(caseArb, blockArb, (k, block) => {
      const h = new Harness(engine);
      const a = grads(k, 18, true);
      const special = [0, -0, -1, NaN, 1, 1e-40];
      const y = Float32Array.from(a.x, (_, i) => special[i % special.length]);
      // Masked dy: +0 where the mask is off; NaN and Inf in dy there must not leak.
      const dy = Float32Array.from(a.dy, (v, i) => (i % special.length < 3 ? (i % 2 ? NaN : Infinity) : v));
      const masked = { ...a, dy, y };
      const pre = { ...a, y: null, dy: Float32Array.from(dy, (v, i) => (y[i] <= 0 ? 0 : v)) };
      const got = backwardSums(h, k, masked, block), want = backwardSums(h, k, pre, block);
      h.done();
      got.partials.forEach((v, i) => {
        if (!Object.is(want.partials[i], v)) throw new Error(`partial ${i}: masked ${v}, pre-masked ${want.partials[i]} block=${block} ${JSON.stringify(k)}`);
      });
    }), runs);
  });

  it('backward dx: bit-identical to ((g − k1) − (x − mean)·k2)·k3 (training) or (g − k1)·k3 (eval) in f32, also in place', () => {
    fc.assert(fc.property(caseArb, fc.constantFrom('none', 'dy', 'x'), fc.boolean(), fc.boolean(), (k, alias, training, relu) => {
      const h = new Harness(engine);
      const { x, mean } = data(k, 6);
      const next = rng(k.seed ^ 7);
      const g = gauss(next);
      const dy = Float32Array.from(x, () => g());
      const [k1, k2, k3] = [0, 1, 2].map(() => Float32Array.from({ length: k.C }, () => (next() - 0.5) * 3));
      const yRelu = Float32Array.from(x, (_, i) => (i % 3 === 0 ? -0 : g()));
      const pd = h.f32(dy), px = h.f32(x), py = relu ? h.f32(yRelu) : 0;
      const pdx = alias === 'dy' ? pd : alias === 'x' ? px : h.bytes(4 * x.length);
      const pm = h.f32(mean), p1 = h.f32(k1), p2 = h.f32(k2), p3 = h.f32(k3), pw = h.bytes(workspaceBytes(k.C));
      if (k.layout === 'NCHW') engine.kernels.backwardDxNchwF32(pd, px, pdx, k.outer, k.C, k.inner, pm, p1, p2, p3, training, py);
      else engine.kernels.backwardDxNhwcF32(pd, px, pdx, k.outer, k.C, pm, p1, p2, p3, pw, training, py);
      const dx = h.readF32(pdx, x.length);
      h.done();
      perChannel(k, (c, i) => {
        const gi = relu && yRelu[i] <= 0 ? 0 : dy[i];
        const want = training ? fr(fr(fr(gi - k1[c]) - fr(fr(x[i] - mean[c]) * k2[c])) * k3[c]) : fr(fr(gi - k1[c]) * k3[c]);
        if (!Object.is(dx[i], want)) throw new Error(`dx[${i}] c=${c}: expected ${want}, got ${dx[i]} ${JSON.stringify(k)}`);
      });
    }), runs);
  });

  it('fused NCHW training forward: statistics within the bound, y bit-identical to normalize with its folded params', () => {
    fc.assert(fc.property(caseArb.filter((k) => k.layout === 'NCHW'), fc.boolean(), fc.boolean(), (k, inPlace, relu) => {
      const h = new Harness(engine);
      const { x } = data(k, 8);
      const next = rng(k.seed ^ 9);
      const gamma = Float32Array.from({ length: k.C }, () => (next() - 0.5) * 4);
      const beta = Float32Array.from({ length: k.C }, () => (next() - 0.5) * 4);
      const eps = 1e-5;
      const px = h.f32(x), py = inPlace ? px : h.bytes(4 * x.length), pg = h.f32(gamma), pb = h.f32(beta);
      const out = h.bytes(24 * k.C);
      engine.kernels.forwardTrainNchwF32(px, py, k.outer, k.C, k.inner, STATS_BLOCK, 0, k.C, pg, pb, eps, out, out + 8 * k.C, out + 16 * k.C, relu ? 0 : -Infinity);
      const got = h.readF64(out, 3 * k.C), y = h.readF32(py, x.length);
      h.done();
      const n = k.outer * k.inner;
      expectStatsWithinBound(k, x, got.subarray(0, k.C), got.subarray(k.C, 2 * k.C));
      for (let c = 0; c < k.C; c++) {
        expect(got[2 * k.C + c], `invStd c=${c}`).toBe(1 / Math.sqrt(got[k.C + c] / n + eps));
      }
      perChannel(k, (c, i) => {
        // fold.ts: meanHi = f32(mean), scale = f32(gamma·invStd), shift = f32(beta − f32(mean − meanHi)·scale)
        const mu = got[c], hi = fr(mu), lo = fr(mu - hi), a = fr(gamma[c] * got[2 * k.C + c]);
        const r = fr(fr(fr(x[i] - hi) * a) + fr(beta[c] - lo * a));
        const yWant = relu && r < 0 ? 0 : r;
        if (!Object.is(y[i], yWant)) throw new Error(`y[${i}] c=${c}: expected ${yWant}, got ${y[i]} ${JSON.stringify(k)}`);
      });
    }), runs);
  });

  it('fused NCHW training forward: mean and m2 bit-identical to statsNchwF32 + mergeMomentsF64, every block size', () => {
    fc.assert(fc.property(caseArb.filter((k) => k.layout === 'NCHW'), blockArb, (k, block) => {
      const h = new Harness(engine);
      const { x } = data(k, 14);
      const want = stats(h, k, x, block);
      const px = h.f32(x), py = h.bytes(4 * x.length), pg = h.f32(new Float32Array(k.C).fill(1)), pb = h.f32(new Float32Array(k.C));
      const out = h.bytes(24 * k.C);
      engine.kernels.forwardTrainNchwF32(px, py, k.outer, k.C, k.inner, block, 0, k.C, pg, pb, 1e-5, out, out + 8 * k.C, out + 16 * k.C, -Infinity);
      const got = h.readF64(out, 2 * k.C);
      h.done();
      for (let c = 0; c < k.C; c++) {
        if (!Object.is(got[c], want.mean[c]) || !Object.is(got[k.C + c], want.m2[c])) {
          throw new Error(`c=${c}: fused (${got[c]}, ${got[k.C + c]}), separate (${want.mean[c]}, ${want.m2[c]}) block=${block} ${JSON.stringify(k)}`);
        }
      }
    }), runs);
  });

  it('fused NCHW backward: sums bit-identical to backwardReduceNchwF32 + mergeSumsF64 (every block size), dx bit-identical to backward dx (training) or dy·k3 (eval)', () => {
    fc.assert(fc.property(caseArb.filter((k) => k.layout === 'NCHW'), blockArb, fc.boolean(), fc.constantFrom('none', 'dy', 'x'), fc.boolean(), (k, block, training, alias, relu) => {
      const h = new Harness(engine);
      const a = grads(k, 10, relu);
      const { dy, x, mean, y: yRelu } = a;
      const next = rng(k.seed ^ 11);
      const invStd = Float32Array.from({ length: k.C }, () => 0.1 + next() * 3);
      const gamma = Float32Array.from({ length: k.C }, () => (next() - 0.5) * 4);
      const want = backwardSums(h, k, a, block);
      const pd = h.f32(dy), px = h.f32(x), pm = h.f32(mean), ps = h.f32(invStd), pg = h.f32(gamma), py = yRelu ? h.f32(yRelu) : 0;
      const pdx = alias === 'dy' ? pd : alias === 'x' ? px : h.bytes(4 * x.length);
      const sums = h.bytes(16 * k.C);
      engine.kernels.backwardNchwF32(pd, px, pdx, k.outer, k.C, k.inner, block, 0, k.C, pm, ps, pg, training, sums, sums + 8 * k.C, py);
      const got = h.readF64(sums, 2 * k.C), dx = h.readF32(pdx, x.length);
      h.done();
      for (let c = 0; c < k.C; c++) {
        if (!Object.is(got[c], want.sumDy[c]) || !Object.is(got[k.C + c], want.sumDyXmu[c])) {
          throw new Error(`c=${c}: fused (${got[c]}, ${got[k.C + c]}), separate (${want.sumDy[c]}, ${want.sumDyXmu[c]}) block=${block} ${JSON.stringify(k)}`);
        }
      }
      const n = k.outer * k.inner;
      perChannel(k, (c, i) => {
        const s = invStd[c], k3 = fr(gamma[c] * s);
        const k1 = fr(got[c] / n), k2 = fr((got[k.C + c] * s * s) / n);
        const gi = yRelu && yRelu[i] <= 0 ? 0 : dy[i];
        const want1 = training ? fr(fr(fr(gi - k1) - fr(fr(x[i] - mean[c]) * k2)) * k3) : fr(fr(gi - 0) * k3);
        if (!Object.is(dx[i], want1)) throw new Error(`dx[${i}] c=${c}: expected ${want1}, got ${dx[i]} ${JSON.stringify(k)}`);
      });
    }), runs);
  });

  it('per-channel folds (fold.ts): bit-identical to their f64 formulas, odd C and non-finite statistics included', () => {
    const special = [NaN, Infinity, -Infinity, 0, -0, 1e-300, 3.4e38, 1e39];
    fc.assert(fc.property(fc.integer({ min: 1, max: 37 }), fc.integer(), fc.boolean(), fc.boolean(), (C, seed, training, xmu) => {
      const h = new Harness(engine);
      const next = rng(seed);
      const pick = (scale: number) => (next() < 0.1 ? special[Math.floor(next() * special.length)] : (next() - 0.5) * 10 ** (scale * (next() - 0.5)));
      const mean = Float64Array.from({ length: C }, () => pick(20));
      const v = Float64Array.from({ length: C }, () => Math.abs(pick(10)));
      const f32 = (scale: number) => Float32Array.from({ length: C }, () => pick(scale));
      const gamma = f32(4), beta = f32(4), invStd = Float32Array.from({ length: C }, () => Math.abs(pick(4)));
      const rm = f32(4), rv = Float32Array.from({ length: C }, () => Math.abs(pick(4)));
      const divisor = 1 + Math.floor(next() * 1000), eps = 1e-5, momentum = next(), n = 2 + Math.floor(next() * 1e6);
      const pm = h.bytes(8 * C), pv = h.bytes(8 * C);
      new Float64Array(engine.arena.buffer, pm, C).set(mean);
      new Float64Array(engine.arena.buffer, pv, C).set(v);
      const pg = h.f32(gamma), pb = h.f32(beta), pi = h.f32(invStd), prm = h.f32(rm), prv = h.f32(rv);
      const out = h.bytes(32 * C), out64 = h.bytes(8 * C);
      const k = engine.kernels;
      const eq = (what: string, got: ArrayLike<number>, want: ArrayLike<number>) => {
        for (let c = 0; c < C; c++) if (!Object.is(got[c], want[c])) throw new Error(`${what}[${c}]: expected ${want[c]}, got ${got[c]} (C=${C}, seed=${seed})`);
      };

      k.foldF32(C, pm, pv, divisor, eps, pg, pb, out, out + 4 * C, out + 8 * C, out64);
      const s = Array.from(v, (vc) => 1 / Math.sqrt(vc / divisor + eps));
      const hi = Array.from(mean, (m) => fr(m));
      const lo = hi.map((x, c) => (Number.isFinite(x) ? fr(mean[c] - x) : 0));
      const a = s.map((sc, c) => fr(gamma[c] * sc));
      eq('invStd', h.readF64(out64, C), s);
      eq('meanHi', h.readF32(out, C), hi);
      eq('scale', h.readF32(out + 4 * C, C), a);
      eq('shift', h.readF32(out + 8 * C, C), a.map((ac, c) => fr(beta[c] - lo[c] * ac)));
      // gamma, beta pointers 0: no arrays, gamma = 1 and beta = 0.
      k.foldF32(C, pm, pv, divisor, eps, 0, 0, out, out + 4 * C, out + 8 * C, out64);
      eq('scale (no gamma)', h.readF32(out + 4 * C, C), s.map(fr));
      eq('shift (no beta)', h.readF32(out + 8 * C, C), s.map((sc, c) => fr(0 - lo[c] * fr(sc))));

      k.foldBackwardF32(C, pm, pv, xmu, pi, pg, n, training, out, out + 4 * C, out + 8 * C, out + 12 * C, out + 16 * C);
      const sx = Array.from(v, (vc, c) => (xmu ? vc * invStd[c] : vc));
      eq('k1', h.readF32(out, C), Array.from(mean, (sg) => (training ? fr(sg / n) : 0)));
      eq('k2', h.readF32(out + 4 * C, C), sx.map((x, c) => (training ? fr((x * invStd[c]) / n) : 0)));
      eq('k3', h.readF32(out + 8 * C, C), Array.from(gamma, (g, c) => fr(g * invStd[c])));
      k.foldBackwardF32(C, pm, pv, xmu, pi, 0, n, training, out, out + 4 * C, out + 8 * C, out + 12 * C, out + 16 * C);
      eq('k3 (no gamma)', h.readF32(out + 8 * C, C), invStd);
      eq('dweight', h.readF32(out + 12 * C, C), sx.map(fr));
      eq('dbias', h.readF32(out + 16 * C, C), Array.from(mean, fr));

      k.updateRunningF32(C, pm, pv, divisor, momentum, prm, prv);
      eq('runningMean', h.readF32(prm, C), Array.from(rm, (r, c) => fr((1 - momentum) * r + momentum * mean[c])));
      eq('runningVar', h.readF32(prv, C), Array.from(rv, (r, c) => fr((1 - momentum) * r + momentum * (v[c] / divisor))));

      k.narrowF64(pm, C, out);
      eq('narrowF64', h.readF32(out, C), Array.from(mean, fr));
      k.widenF32(pg, C, out64);
      eq('widenF32', h.readF64(out64, C), gamma);
      h.done();
    }), runs);
  });

  it('reads and writes nothing outside its ranges: buffers that end exactly at the end of memory', () => {
    for (const [outer, C, inner] of [[1, 1, 1], [2, 3, 5], [3, 5, 17], [1, 7, 4]]) {
      const arena = engine.arena;
      const size = outer * C * inner;
      // Params and workspace first, then x and y placed flush against the end of memory.
      const params = arena.alloc(64 * C + workspaceBytes(C) + 4096);
      const end = arena.buffer.byteLength;
      const guard = arena.alloc(end - (params + 64 * C + workspaceBytes(C) + 4096) + 8 * size + 65536);
      const memEnd = arena.buffer.byteLength;
      const px = memEnd - 4 * size, py = memEnd - 8 * size;
      expect(px).toBeGreaterThanOrEqual(guard);
      const mem = () => new Float32Array(arena.buffer);
      const x = Float32Array.from({ length: size }, (_, i) => i % 7);
      mem().set(x, px / 4);
      const pm = params, pq = params + 8 * C, ph = params + 16 * C, pl = ph + 4 * C, pa = pl + 4 * C, pb = pa + 4 * C;
      const pw = params + 64 * C;
      mem().fill(0, ph / 4, pb / 4 + C);
      mem().fill(1, pa / 4, pa / 4 + C);
      const k = engine.kernels;
      const pp = pw + workspaceBytes(C); // partials of one block per channel (32·C bytes), in the slack
      k.statsNchwF32(px, outer, C, inner, 1 << 30, 0, 1, pp);
      k.statsNhwcF32(px, outer * inner, C, 1 << 30, 0, 1, pp, pw);
      k.mergeMomentsF64(pp, 1, C, pm, pq);
      k.normalizeNchwF32(px, py, outer, C, inner, ph, pa, pb, 0);
      k.normalizeNhwcF32(px, px, outer * inner, C, ph, pa, pb, pw, 0); // in place, flush with the end
      k.backwardReduceNchwF32(px, px, outer, C, inner, ph, 1 << 30, 0, 1, pp, px);
      k.backwardReduceNhwcF32(px, px, outer * inner, C, ph, 1 << 30, 0, 1, pp, pw, px);
      k.mergeSumsF64(pp, 1, C, pm, pq);
      k.backwardDxNchwF32(px, px, px, outer, C, inner, ph, pl, pa, pb, true, px);
      k.backwardDxNhwcF32(py, px, px, outer * inner, C, ph, pl, pa, pb, pw, true, px);
      k.forwardTrainNchwF32(px, px, outer, C, inner, STATS_BLOCK, 0, C, pa, pb, 1e-5, pm, pq, pw, 0); // pw: 24·C bytes of f64 outputs fit
      k.backwardNchwF32(px, px, px, outer, C, inner, STATS_BLOCK, 0, C, ph, pa, pa, true, pm, pq, px);
      k.backwardNchwF32(px, px, px, outer, C, inner, 1, 0, C, ph, pa, pa, true, pm, pq, px);
      // Partials of the finest partition (block = 1) flush with the end of memory, x in the slack.
      const xs = pp + 32 * C;
      mem().set(x, xs / 4);
      const nchw = outer * inner, nhwc = outer * inner; // blocks at block = 1
      k.statsNchwF32(xs, outer, C, inner, 1, 0, nchw, memEnd - 32 * C * nchw);
      k.mergeMomentsF64(memEnd - 32 * C * nchw, nchw, C, pm, pq);
      k.statsNhwcF32(xs, outer * inner, C, 1, 0, nhwc, memEnd - 32 * C * nhwc, pw);
      k.backwardReduceNchwF32(xs, xs, outer, C, inner, ph, 1, 0, nchw, memEnd - 16 * C * nchw, xs);
      k.mergeSumsF64(memEnd - 16 * C * nchw, nchw, C, pm, pq);
      k.backwardReduceNhwcF32(xs, xs, outer * inner, C, ph, 1, 0, nhwc, memEnd - 16 * C * nhwc, pw, xs);
      k.mergeSumsF64(memEnd - 16 * C * nhwc, nhwc, C, pm, pq);
      arena.release(guard);
      arena.release(params);
    }
  });
});

describe('debug build traps on contract violations', () => {
  it('a range past the end of memory aborts with the assertion message', async () => {
    const engine = await loadDebugEngine(false); // the module's own assertions, not the registry's checks
    const end = engine.arena.buffer.byteLength;
    const params = engine.arena.alloc(256);
    expect(() => engine.kernels.statsNchwF32(end - 8, 1, 1, 4, 4, 0, 1, params)).toThrow(/range past the end of memory/);
    expect(() => engine.kernels.statsNchwF32(params + 4, 1, 1, 4, 4, 0, 1, params + 2)).toThrow(/not 4-byte aligned/);
    expect(() => engine.kernels.statsNchwF32(params, 1, 1, 4, 4, 0, 2, params + 16)).toThrow(/block range outside the partition/);
    expect(() => engine.kernels.statsNhwcF32(params, 4, 1, -1, 0, 1, params + 16, params + 64)).toThrow(/block must be in/);
    expect(() => engine.kernels.normalizeNchwF32(params, params, 0, 1, 4, params, params, params, 0)).toThrow(/counts must be positive/);
    const k = engine.kernels;
    // Backward partials: 2 f64[C] per block (16 bytes per block for C = 1).
    expect(() => k.backwardReduceNchwF32(params, params, 1, 1, 4, params, 2, 0, 3, params + 64, 0)).toThrow(/block range outside the partition/);
    expect(() => k.backwardReduceNchwF32(params, params, 1, 1, 4, params, 2, 2, 1, params + 64, 0)).toThrow(/block range outside the partition/);
    expect(() => k.backwardReduceNchwF32(params, params, 1, 1, 4, params, 0, 0, 1, params + 64, 0)).toThrow(/block must be in/);
    expect(() => k.backwardReduceNchwF32(params, params, 1, 1, 4, params, 2, 0, 2, end - 16, 0)).toThrow(/range past the end of memory/);
    expect(() => k.backwardReduceNhwcF32(params, params, 4, 1, params, 2, 0, 3, params + 64, params + 128, 0)).toThrow(/block range outside the partition/);
    expect(() => k.backwardReduceNhwcF32(params, params, 4, 1, params, 1 + (1 << 30), 0, 1, params + 64, params + 128, 0)).toThrow(/block must be in/);
    expect(() => k.backwardReduceNhwcF32(params, params, 4, 1, params, 2, 0, 2, end - 16, params + 128, 0)).toThrow(/range past the end of memory/);
    expect(() => k.mergeSumsF64(end - 16, 2, 1, params, params + 8)).toThrow(/range past the end of memory/);
    expect(() => k.mergeSumsF64(params, 0, 1, params, params + 8)).toThrow(/counts must be positive/);
    expect(() => k.backwardNchwF32(params, params, params, 1, 1, 4, 0, 0, 1, params, params, params, true, params + 64, params + 72, 0)).toThrow(/block must be in/);
  });
});
