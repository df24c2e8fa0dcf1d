// engine.forward / engine.backward against the float64 oracle, property-tested over random
// shapes (ranks 2-5, both layouts, dims around the SIMD tiles, C = 1, spatial 1, C % 4 != 0),
// affine on/off, running statistics on/off, training and eval, copy and zero-copy paths,
// out-of-place and in-place, on every build. Tolerances: helpers/tolerance.ts.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Engine } from '../src/engine.js';
import { ShapeError } from '../src/errors.js';
import { oracleBackward, oracleForward } from '../src/oracle/batchnorm.js';
import { BUILDS, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { channelOf as channelOfShape, expectClose, gauss, product, rng } from './helpers/numeric.js';
import { tolDbias, tolDweight, tolDx, tolSaveInvStd, tolSaveMean, tolY, type BackwardFacts, type ChannelFacts } from './helpers/tolerance.js';

type Layout = 'NCHW' | 'NHWC';
type Placement = 'copy' | 'zero-copy';
type OutMode = 'new' | 'plain' | 'in-place';

interface Case {
  layout: Layout; shape: number[]; affine: boolean; running: boolean; training: boolean;
  momentum: number; unbiased: boolean; eps: number; placement: Placement; out: OutMode; relu: boolean; seed: number;
}

const dim = fc.oneof(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9), fc.integer({ min: 1, max: 17 }));
const channels = fc.oneof(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 16, 17), fc.integer({ min: 1, max: 40 }));

/** Logical (N, C, ...spatial) dims; the NHWC shape moves C last. */
const caseArb: fc.Arbitrary<Case> = fc.record({
  layout: fc.constantFrom<Layout>('NCHW', 'NHWC'),
  logical: fc.integer({ min: 0, max: 3 }).chain((spatial) =>
    fc.tuple(fc.integer({ min: 1, max: 5 }), channels, fc.array(dim, { minLength: spatial, maxLength: spatial }))),
  affine: fc.boolean(),
  running: fc.boolean(),
  training: fc.boolean(),
  momentum: fc.oneof(fc.constantFrom(0, 0.1, 1), fc.double({ min: 0, max: 1, noNaN: true })),
  unbiased: fc.boolean(),
  eps: fc.constantFrom(1e-5, 1e-3, 0.1),
  placement: fc.constantFrom<Placement>('copy', 'zero-copy'),
  out: fc.constantFrom<OutMode>('new', 'plain', 'in-place'),
  relu: fc.boolean(),
  seed: fc.integer(),
}).filter(({ logical: [n, c, s] }) => n * c * product(s) <= 30000)
  .map(({ logical: [n, c, s], ...rest }) => ({
    ...rest,
    shape: rest.layout === 'NCHW' ? [n, c, ...s] : [n, ...s, c],
  }));

function channelAxis(k: { layout: Layout; shape: number[] }): number {
  return k.layout === 'NCHW' ? 1 : k.shape.length - 1;
}

const channelOf = (k: { layout: Layout; shape: number[] }) => channelOfShape(k.shape, k.layout);


/** x with per-channel offsets up to 1e3 std and spreads over six decades; params; dy. */
function makeData(k: Case) {
  const next = rng(k.seed);
  const g = gauss(next);
  const C = k.shape[channelAxis(k)];
  const size = product(k.shape);
  const ch = channelOf(k);
  const center = Array.from({ length: C }, () => (next() - 0.5) * 2 * 10 ** (3 * next()));
  const spread = Array.from({ length: C }, () => 10 ** (6 * next() - 3));
  const x = Float32Array.from({ length: size }, (_, i) => center[ch(i)] + spread[ch(i)] * g());
  const weight = k.affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null;
  const bias = k.affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null;
  const runningMean = k.running ? Float32Array.from(center, (m) => m + (next() - 0.5) * 0.1) : null;
  const runningVar = k.running ? Float32Array.from(spread, (s) => s * s * (0.5 + next())) : null;
  const dy = Float32Array.from({ length: size }, () => g());
  return { C, size, x, weight, bias, runningMean, runningVar, dy };
}

/** Per-channel facts of x around the oracle's exact mean, for the tolerances. */
function channelFacts(k: Case, x: Float32Array, mean: Float64Array): ChannelFacts[] {
  const ch = channelOf(k);
  const C = mean.length;
  const facts = Array.from({ length: C }, (_, c) => ({ n: x.length / C, mean: mean[c], m2: 0, maxDev: 0 }));
  for (let i = 0; i < x.length; i++) {
    const f = facts[ch(i)];
    const d = x[i] - f.mean;
    f.m2 += d * d;
    f.maxDev = Math.max(f.maxDev, Math.abs(d));
  }
  return facts;
}

function place(engine: Engine, a: Float32Array, placement: Placement): { view: () => Float32Array; free: () => void } {
  if (placement === 'copy') {
    const copy = a.slice(); // the test keeps `a` pristine for the oracle
    return { view: () => copy, free: () => {} };
  }
  const t = engine.tensor(a);
  return { view: () => t.data, free: () => t.free() };
}

describe.each(BUILDS)('forward and backward vs the oracle, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it('matches the oracle on random shapes, layouts and modes', () => {
    fc.assert(fc.property(caseArb, (k) => {
      const d = makeData(k);
      const what = `${JSON.stringify(k)}`;
      const batchStats = k.training || !k.running;
      const opts = {
        layout: k.layout, training: k.training, weight: d.weight, bias: d.bias,
        momentum: k.momentum, unbiasedRunningVar: k.unbiased, eps: k.eps, activation: k.relu ? 'relu' as const : 'none' as const,
      };
      const rm = d.runningMean?.slice() ?? null, rv = d.runningVar?.slice() ?? null;
      const xT = place(engine, d.x, k.placement);
      try {
        if (batchStats && d.size / d.C < 2) {
          expect(() => engine.forward(xT.view(), k.shape, { ...opts, runningMean: rm, runningVar: rv })).toThrow(ShapeError);
          return;
        }
        const plainOut = k.out === 'plain' ? new Float32Array(d.size) : undefined;
        const out = k.out === 'in-place' ? xT.view() : plainOut;
        const xBefore = d.x.slice();
        const outOffset = out?.byteOffset;
        const r = engine.forward(xT.view(), k.shape, { ...opts, runningMean: rm, runningVar: rv, out });
        const yFwd = r.y.slice(); // the forward output (ReLU mask for backward), before any allocation detaches r.y
        // y is `out` itself, or a fresh view over its bytes when the call's scratch grew memory.
        if (out && r.y !== out) {
          expect(k.out).toBe('in-place');
          expect([r.y.buffer === engine.arena.buffer, r.y.byteOffset, r.y.length]).toEqual([true, outOffset, d.size]);
        }
        if (k.out !== 'in-place') expect(xT.view()).toEqual(xBefore); // input untouched

        const o = oracleForward(d.x, k.shape, { ...opts, runningMean: d.runningMean, runningVar: d.runningVar });
        const ch = channelOf(k);
        for (let i = 0; i < d.size; i++) {
          const c = ch(i);
          expectClose(yFwd[i], o.y[i], tolY(o.y[i], d.weight?.[c] ?? 1, d.bias?.[c] ?? 0), `y[${i}] c=${c} ${what}`);
        }
        if (batchStats) {
          const facts = channelFacts(k, d.x, o.mean);
          for (let c = 0; c < d.C; c++) {
            expectClose(r.saveMean[c], o.mean[c], tolSaveMean(facts[c]), `saveMean[${c}] ${what}`);
            expectClose(r.saveInvStd[c], o.invStd[c], tolSaveInvStd(o.invStd[c], facts[c], k.eps), `saveInvStd[${c}] ${what}`);
            if (k.training && rm && rv && o.runningMean && o.runningVar) {
              const n = facts[c].n;
              const varErr = (k.momentum * (facts[c].m2 + m2ErrOf(facts[c]))) / (k.unbiased ? n - 1 : n) - (k.momentum * facts[c].m2) / (k.unbiased ? n - 1 : n);
              expectClose(rm[c], o.runningMean[c], ulpHalf(o.runningMean[c]) + k.momentum * meanErrOf(facts[c]), `runningMean[${c}] ${what}`);
              expectClose(rv[c], o.runningVar[c], ulpHalf(o.runningVar[c]) + varErr, `runningVar[${c}] ${what}`);
            }
          }
        } else {
          for (let c = 0; c < d.C; c++) {
            expect(r.saveMean[c]).toBe(d.runningMean![c]);
            expect(r.saveInvStd[c]).toBe(Math.fround(1 / Math.sqrt(d.runningVar![c] + k.eps)));
          }
        }
        if (!k.training && rm && rv) {
          expect(rm).toEqual(d.runningMean); // eval never touches running stats
          expect(rv).toEqual(d.runningVar);
        }

        // Backward with what forward saved; training mode iff batch statistics were used.
        const dyT = place(engine, d.dy, k.placement);
        const xNow = k.out === 'in-place' ? place(engine, d.x, k.placement) : xT;
        try {
          const dxOut = k.out === 'in-place' ? dyT.view() : k.out === 'plain' ? new Float32Array(d.size) : undefined;
          const relu = { activation: opts.activation, y: k.relu ? yFwd : undefined };
          const b = engine.backward(dyT.view(), xNow.view(), k.shape, {
            layout: k.layout, training: batchStats, weight: d.weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd, out: dxOut, ...relu,
          });
          const ob = oracleBackward(d.dy, d.x, k.shape, {
            layout: k.layout, training: batchStats, weight: d.weight, mean: r.saveMean, invStd: r.saveInvStd, ...relu,
          });
          const facts = backwardFacts(k, d, r.saveMean, r.saveInvStd, batchStats, k.relu ? yFwd : null);
          for (let i = 0; i < d.size; i++) {
            const c = ch(i);
            const gi = k.relu && yFwd[i] <= 0 ? 0 : d.dy[i];
            expectClose(b.dx[i], ob.dx[i], tolDx(gi, d.x[i] - r.saveMean[c], facts[c]), `dx[${i}] c=${c} ${what}`);
          }
          for (let c = 0; c < d.C; c++) {
            expectClose(b.dweight[c], ob.dweight[c], tolDweight(ob.dweight[c], facts[c]), `dweight[${c}] ${what}`);
            expectClose(b.dbias[c], ob.dbias[c], tolDbias(ob.dbias[c], facts[c]), `dbias[${c}] ${what}`);
          }
        } finally {
          dyT.free();
          if (xNow !== xT) xNow.free();
        }
      } finally {
        xT.free();
      }
      expect(engine.info().bytesInUse).toBe(0); // every call released its scratch
    }), { numRuns: 200 });
  });

  it('NCHW and NHWC of the same logical tensor give the same result', () => {
    fc.assert(fc.property(caseArb.filter((k) => k.layout === 'NCHW'), (k) => {
      const d = makeData({ ...k, out: 'new', placement: 'copy' });
      if ((k.training || !k.running) && d.size / d.C < 2) return;
      const [n, c, ...s] = k.shape;
      const nhwcShape = [n, ...s, c];
      const inner = product(s);
      const toNhwc = (a: Float32Array) => {
        const t = new Float32Array(a.length);
        for (let i = 0; i < a.length; i++) {
          const ni = Math.floor(i / (c * inner)), ci = Math.floor(i / inner) % c, j = i % inner;
          t[(ni * inner + j) * c + ci] = a[i];
        }
        return t;
      };
      const opts = { training: k.training, weight: d.weight, bias: d.bias, momentum: k.momentum, eps: k.eps };
      const rm1 = d.runningMean?.slice() ?? null, rv1 = d.runningVar?.slice() ?? null;
      const rm2 = d.runningMean?.slice() ?? null, rv2 = d.runningVar?.slice() ?? null;
      const a = engine.forward(d.x, k.shape, { ...opts, layout: 'NCHW', runningMean: rm1, runningVar: rv1 });
      const b = engine.forward(toNhwc(d.x), nhwcShape, { ...opts, layout: 'NHWC', runningMean: rm2, runningVar: rv2 });
      const ya = toNhwc(a.y);
      const o = oracleForward(d.x, k.shape, { ...opts, layout: 'NCHW', runningMean: d.runningMean, runningVar: d.runningVar });
      const yo = toNhwc(Float32Array.from(o.y));
      for (let i = 0; i < ya.length; i++) {
        const ci = i % c;
        const tol = 2 * tolY(yo[i], d.weight?.[ci] ?? 1, d.bias?.[ci] ?? 0); // each within tolY of the oracle
        expectClose(b.y[i], ya[i], tol, `y[${i}] NHWC vs NCHW ${JSON.stringify(k)}`);
      }
      for (let ci = 0; ci < c; ci++) {
        expectClose(b.saveMean[ci], a.saveMean[ci], 2 * tolSaveMean({ n: d.size / c, mean: o.mean[ci], m2: 0, maxDev: 0 }) + 1e-30, `saveMean[${ci}]`);
      }
    }), { numRuns: 100 });
  });
});

function ulpHalf(v: number): number {
  const a = Math.abs(v);
  return a < 2 ** -126 ? 2 ** -150 : 2 ** (Math.floor(Math.log2(a)) - 24);
}
function meanErrOf(f: ChannelFacts): number {
  return (f.n + 4) * 2 ** -53 * (Math.abs(f.mean) + 6 * f.maxDev) * 1.0001;
}
function m2ErrOf(f: ChannelFacts): number {
  return (f.n + 4) * 2 ** -53 * (8 * f.m2 + 16 * f.n * f.maxDev ** 2) * 1.0001;
}

function backwardFacts(
  k: Case, d: ReturnType<typeof makeData>, mean: Float32Array, invStd: Float32Array, training: boolean, yRelu: Float32Array | null,
): BackwardFacts[] {
  const ch = channelOf(k);
  const n = d.size / d.C;
  const sums = Array.from({ length: d.C }, () => ({ sumDy: 0, sumDyXmu: 0, sumAbsDy: 0, sumAbsDyXmu: 0 }));
  for (let i = 0; i < d.size; i++) {
    const s = sums[ch(i)];
    const g = yRelu && yRelu[i] <= 0 ? 0 : d.dy[i];
    const t = g * (d.x[i] - mean[ch(i)]);
    s.sumDy += g; s.sumAbsDy += Math.abs(g);
    s.sumDyXmu += t; s.sumAbsDyXmu += Math.abs(t);
  }
  return sums.map((s, c) => ({
    n, sumAbsDy: s.sumAbsDy, sumAbsDyXmu: s.sumAbsDyXmu, invStd: invStd[c],
    k1: training ? s.sumDy / n : 0,
    k2: training ? (s.sumDyXmu * invStd[c] * invStd[c]) / n : 0,
    k3: (d.weight?.[c] ?? 1) * invStd[c],
  }));
}
