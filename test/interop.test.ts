// Interop: framework conventions of the layer (src/conventions.ts), state dicts with PyTorch and
// Keras names (src/statedict.ts), and inference folding (src/fold.ts).
//
// Tolerances:
// - Peer vectors: each vector's own {atol, rtol} (../shared/vectors/README.md).
// - Training sequences vs the oracle stepped by hand: after each step the layer's f32 running
//   stats are within ½ ulp + m·meanErr (m·m2Err / divisor) + 8·u64·(|old| + |batch|) of the
//   oracle's update of the same f32 state, m = the weight of
//   the new batch the convention implies.
// - foldedAffine: scale and shift are rounded once from f64, so x·scale + shift (in f64) is
//   within u·(|x·scale| + |shift|) + 4·u64·(...) of the exact eval map; the engine's eval y is
//   within tolY; the two are compared within the sum.
// - foldIntoConv / foldIntoLinear against the oracle composition bn(conv(x)) in f64: every folded
//   weight is W·scale·(1 + δ), |δ| <= u + 4·u64, the folded bias within (u + 8·u64)·|b'|, the f64
//   conv sums add γ64(K + 1) of Σ|x·W'| + |b'|, so
//     |folded − exact| <= (u + 4u64)·Σ|x·W·scale| + (u + 8u64)·|b'| + 2·γ64(K + 8)·(Σ|x·W'| + |b'| + |b − rm|·|scale| + |β|).
//   The unfolded path (conv output rounded to f32, then engine eval forward) is within
//   u·|z·scale| + tolY of the exact; folded vs unfolded: the sum.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine.js';
import { BatchNorm } from '../src/layer.js';
import { InvalidArgumentError, ShapeError } from '../src/errors.js';
import { CONVENTIONS, functionalOptions, type Convention } from '../src/conventions.js';
import { foldIntoConv, foldIntoLinear, foldedAffine, type ConvWeightLayout } from '../src/fold.js';
import { oracleForward } from '../src/oracle/batchnorm.js';
import { BUILDS, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { U32, U64, expectClose, gamma64, gauss, product, rng, ulp32 } from './helpers/numeric.js';
import { meanErr, m2Err, tolY, type ChannelFacts } from './helpers/tolerance.js';
import {
  compareOutput, listVectorFiles, loadVectorFile, mapVector, toleranceFor, vectorsRootExists, type Vector,
} from './helpers/vectors.js';

const VECTORS_ROOT = new URL('../../shared/vectors/', import.meta.url);
const ROOT_EXISTS = vectorsRootExists(VECTORS_ROOT);
if (!ROOT_EXISTS) {
  const reason = `peer test vectors not found at ${VECTORS_ROOT.pathname}`;
  if (process.env.CI === 'true') throw new Error(`${reason}: CI=true, so a missing vectors folder is a failure, not a skip`);
  console.warn(`\n*** SKIPPING the ONNX-preset vector tests in test/interop.test.ts: ${reason}. ***\n`);
}
const ONNX_VECTORS: Vector[] = ROOT_EXISTS
  ? listVectorFiles(VECTORS_ROOT, 'onnx').map((name) => {
    const loaded = loadVectorFile(VECTORS_ROOT, 'onnx', name);
    if (!loaded.vector) throw new Error(`${loaded.file}: ${loaded.problem}`);
    return loaded.vector;
  })
  : [];

function batch(seed: number, shape: number[], center = 3, spread = 2): Float32Array {
  const g = gauss(rng(seed));
  return Float32Array.from({ length: product(shape) }, () => center + spread * g());
}

function channelFacts(x: Float32Array, shape: number[], mean: Float64Array): ChannelFacts[] {
  const C = shape[1], inner = product(shape.slice(2));
  const f = Array.from(mean, (m) => ({ n: x.length / C, mean: m, m2: 0, maxDev: 0 }));
  for (let i = 0; i < x.length; i++) {
    const c = f[Math.floor(i / inner) % C];
    const d = x[i] - c.mean;
    c.m2 += d * d;
    c.maxDev = Math.max(c.maxDev, Math.abs(d));
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// Conventions

describe('convention presets', () => {
  it('set momentum meaning and default, running-variance estimator and eps; overrides win', () => {
    expect(CONVENTIONS.pytorch).toEqual({ momentumWeights: 'new', momentum: 0.1, unbiasedRunningVar: true, eps: 1e-5 });
    expect(CONVENTIONS.onnx).toEqual({ momentumWeights: 'old', momentum: 0.9, unbiasedRunningVar: false, eps: 1e-5 });
    expect(CONVENTIONS.keras).toEqual({ momentumWeights: 'old', momentum: 0.99, unbiasedRunningVar: false, eps: 1e-3 });
    expect(functionalOptions('pytorch')).toEqual({ momentum: 0.1, unbiasedRunningVar: true, eps: 1e-5 });
    expect(functionalOptions('onnx')).toEqual({ momentum: 1 - 0.9, unbiasedRunningVar: false, eps: 1e-5 });
    expect(functionalOptions('keras')).toEqual({ momentum: 1 - 0.99, unbiasedRunningVar: false, eps: 1e-3 });
    expect(functionalOptions('keras', { momentum: 0.5, eps: 1e-5, unbiasedRunningVar: true }))
      .toEqual({ momentum: 0.5, unbiasedRunningVar: true, eps: 1e-5 });
    expect(functionalOptions('onnx', { momentum: null, numBatchesTracked: 3 }).momentum).toBe(1 / 4);
    expect(() => functionalOptions('caffe' as Convention)).toThrow(InvalidArgumentError);
  });

  it('the layer stores the convention\'s own values', async () => {
    const fake = await makeEngine('scalar'); // the constructor only stores the engine
    const p = new BatchNorm(fake, 2);
    expect([p.convention, p.momentum, p.unbiasedRunningVar, p.eps]).toEqual(['pytorch', 0.1, true, 1e-5]);
    const o = new BatchNorm(fake, 2, { convention: 'onnx' });
    expect([o.convention, o.momentum, o.unbiasedRunningVar, o.eps]).toEqual(['onnx', 0.9, false, 1e-5]);
    const k = new BatchNorm(fake, 2, { convention: 'keras' });
    expect([k.convention, k.momentum, k.unbiasedRunningVar, k.eps]).toEqual(['keras', 0.99, false, 1e-3]);
    const custom = new BatchNorm(fake, 2, { convention: 'keras', momentum: null, eps: 1e-4, unbiasedRunningVar: true });
    expect([custom.momentum, custom.unbiasedRunningVar, custom.eps]).toEqual([null, true, 1e-4]);
    expect(() => new BatchNorm(fake, 2, { convention: 'tf' as Convention })).toThrow(/options\.convention: expected one of 'pytorch', 'onnx', 'keras'/);
    expect(() => new BatchNorm(fake, 2, { convention: 'onnx', momentum: 1.5 }))
      .toThrow(/options\.momentum: expected a number in \[0, 1\] \(onnx: weight of the old running value\)/);
    expect(() => new BatchNorm(fake, 2, { unbiasedRunningVar: 1 as unknown as boolean })).toThrow(InvalidArgumentError);
  });
});

describe.each(BUILDS)('conventions through the layer, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  // Every ONNX vector (training and inference) through a layer with the 'onnx' preset: the
  // vector's momentum is passed as ONNX means it (weight of the old value), never converted by hand.
  (ROOT_EXISTS ? describe : describe.skip)('ONNX vectors through the onnx preset', () => {
    it('finds ONNX training vectors', () => {
      expect(ONNX_VECTORS.filter((v) => v.kind === 'training').length).toBeGreaterThan(0);
    });
    for (const v of ONNX_VECTORS) {
      if (v.kind !== 'training' && v.kind !== 'inference') continue;
      it(v.id, () => {
        const mapping = mapVector(v);
        if (!mapping.ok) throw new Error(`${v.id}: ${mapping.reason}`);
        const c = mapping.engineCase;
        expect(v.momentumConvention ?? 'onnx').toMatch(/^onnx/);
        if (v.kind === 'training') expect(v.runningVarEstimator ?? 'biased').toMatch(/^biased/);
        const C = c.layout === 'NCHW' ? c.shape[1] : c.shape[c.shape.length - 1];
        const attrs = v.attributes as { momentum?: number; epsilon?: number };
        const layer = new BatchNorm(engine, C, {
          convention: 'onnx', layout: c.layout,
          ...(attrs.momentum !== undefined ? { momentum: attrs.momentum } : {}),
          ...(attrs.epsilon !== undefined ? { eps: attrs.epsilon } : {}),
        });
        const init = { weight: c.weight(), bias: c.bias(), mean: c.mean(), variance: c.variance() };
        if (init.weight) layer.weight!.set(init.weight);
        if (init.bias) layer.bias!.set(init.bias);
        layer.runningMean!.set(init.mean!);
        layer.runningVar!.set(init.variance!);
        if (v.kind === 'inference') layer.eval();
        let y = c.x;
        for (let t = 0; t < c.times; t++) y = layer.forward(c.feedBack ? y : c.x, c.shape);
        const actual: Record<string, ArrayLike<number>> = { Y: y, y };
        if (v.kind === 'training') Object.assign(actual, { running_mean: layer.runningMean!, running_var: layer.runningVar! });
        // saved statistics: the same preset through the functional API.
        const f = engine.forward(c.x, c.shape, {
          layout: c.layout, training: v.kind === 'training', weight: init.weight, bias: init.bias,
          runningMean: init.mean!.slice(), runningVar: init.variance!.slice(),
          ...functionalOptions('onnx', { momentum: attrs.momentum, eps: attrs.epsilon }),
        });
        Object.assign(actual, { saved_mean: f.saveMean, saved_inv_std: f.saveInvStd });
        const problems = Object.entries(v.outputs).flatMap(([name, spec]) => (actual[name]
          ? compareOutput(v.id, name, actual[name], spec.data!, toleranceFor(v, name))
          : [`${v.id}: no output ${name}`]));
        expect(problems).toEqual([]);
      });
    }
  });

  // Several training steps vs the oracle stepped by hand with the primitive each convention implies.
  const sequences: Array<{ convention: Convention; momentum?: number | null; factor: (step: number) => number; unbiased: boolean; eps: number }> = [
    { convention: 'pytorch', factor: () => 0.1, unbiased: true, eps: 1e-5 },
    { convention: 'pytorch', momentum: 0.3, factor: () => 0.3, unbiased: true, eps: 1e-5 },
    { convention: 'pytorch', momentum: null, factor: (s) => 1 / s, unbiased: true, eps: 1e-5 },
    { convention: 'onnx', factor: () => 1 - 0.9, unbiased: false, eps: 1e-5 },
    { convention: 'onnx', momentum: null, factor: (s) => 1 / s, unbiased: false, eps: 1e-5 },
    { convention: 'keras', factor: () => 1 - 0.99, unbiased: false, eps: 1e-3 },
    { convention: 'keras', momentum: 0.5, factor: () => 0.5, unbiased: false, eps: 1e-3 },
  ];
  for (const s of sequences) {
    it(`${s.convention} momentum ${s.momentum === undefined ? 'default' : s.momentum}: 6 training steps, then eval, match the oracle`, () => {
      const shape = [4, 5, 3, 3];
      const layer = new BatchNorm(engine, 5, { convention: s.convention, ...(s.momentum !== undefined ? { momentum: s.momentum } : {}) });
      layer.weight!.set([0.5, 1, 1.5, -1, 2]);
      layer.bias!.set([0, 0.25, -0.5, 1, 0]);
      for (let step = 1; step <= 6; step++) {
        const x = batch(step, shape, step, 1 + step / 3);
        const before = { rm: layer.runningMean!.slice(), rv: layer.runningVar!.slice() };
        const y = layer.forward(x, shape);
        const m = s.factor(step);
        const o = oracleForward(x, shape, {
          training: true, weight: layer.weight, bias: layer.bias, runningMean: before.rm, runningVar: before.rv,
          momentum: m, unbiasedRunningVar: s.unbiased, eps: s.eps,
        });
        expect(layer.numBatchesTracked).toBe(step);
        for (let i = 0; i < y.length; i++) {
          const c = Math.floor(i / 9) % 5;
          expectClose(y[i], o.y[i], tolY(o.y[i], layer.weight![c], layer.bias![c]), `step ${step} y[${i}]`);
        }
        const f = channelFacts(x, shape, o.mean);
        for (let c = 0; c < 5; c++) {
          const divisor = s.unbiased ? f[c].n - 1 : f[c].n;
          const tRm = ulp32(o.runningMean![c]) / 2 + m * meanErr(f[c]) + 8 * U64 * (Math.abs(before.rm[c]) + Math.abs(o.mean[c]));
          const tRv = ulp32(o.runningVar![c]) / 2 + (m * m2Err(f[c])) / divisor + 8 * U64 * (before.rv[c] + f[c].m2 / divisor);
          expectClose(layer.runningMean![c], o.runningMean![c], tRm, `step ${step} running mean[${c}]`);
          expectClose(layer.runningVar![c], o.runningVar![c], tRv, `step ${step} running var[${c}]`);
        }
      }
      layer.eval();
      const x = batch(99, shape);
      const y = layer.forward(x, shape);
      const o = oracleForward(x, shape, {
        training: false, weight: layer.weight, bias: layer.bias, runningMean: layer.runningMean, runningVar: layer.runningVar, eps: s.eps,
      });
      for (let i = 0; i < y.length; i++) {
        const c = Math.floor(i / 9) % 5;
        expectClose(y[i], o.y[i], tolY(o.y[i], layer.weight![c], layer.bias![c]), `eval y[${i}]`);
      }
    });
  }

  it('keras biased moving variance: one step from the initial 1 is 0.99 + 0.01·m2/n', () => {
    const shape = [6, 2];
    const x = Float32Array.of(1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60);
    const layer = new BatchNorm(engine, 2, { convention: 'keras' });
    layer.forward(x, shape);
    // channel 0: mean 3.5, m2 = 17.5, biased var 17.5/6; channel 1: x10.
    expectClose(layer.runningMean![0], 0.01 * 3.5, ulp32(0.035), 'moving_mean[0]');
    expectClose(layer.runningVar![0], 0.99 + 0.01 * (17.5 / 6), ulp32(1), 'moving_variance[0]');
    expectClose(layer.runningVar![1], 0.99 + 0.01 * (1750 / 6), ulp32(3.9), 'moving_variance[1]');
  });
});

// ---------------------------------------------------------------------------------------------
// State dicts

describe('state dicts', () => {
  let fake: Engine; // the state-dict calls never run a kernel
  beforeAll(async () => {
    fake = await makeEngine('scalar');
  });
  function trained(convention: Convention = 'pytorch', opts: { affine?: boolean; trackRunningStats?: boolean } = {}): BatchNorm {
    const layer = new BatchNorm(fake, 3, { convention, ...opts });
    const next = rng(17);
    layer.weight?.set([next(), -next(), 3 * next()].map(Math.fround));
    layer.bias?.set([next() - 0.5, 1e-20, -123.456]);
    layer.runningMean?.set([0.1, -2.5e7, 3.3333333]);
    layer.runningVar?.set([1.5e-30, 0.7, 12345.678]);
    layer.numBatchesTracked = 42;
    return layer;
  }

  it('PyTorch names, plain JSON, exact float32 round trip', () => {
    const a = trained();
    const dict = a.stateDict();
    expect(Object.keys(dict)).toEqual(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    expect(Array.isArray(dict.weight)).toBe(true);
    expect(dict.num_batches_tracked).toBe(42);
    const b = new BatchNorm(fake, 3);
    const result = b.loadStateDict(JSON.parse(JSON.stringify(dict)));
    expect(result).toEqual({ format: 'pytorch', missingKeys: [], unexpectedKeys: [] });
    for (const key of ['weight', 'bias', 'runningMean', 'runningVar'] as const) expect(b[key]).toEqual(a[key]);
    expect(b.numBatchesTracked).toBe(42);
  });

  it('Keras names (default for the keras convention, or format: "keras"); loading sets numBatchesTracked to 0', () => {
    const a = trained('keras');
    const dict = a.stateDict();
    expect(Object.keys(dict)).toEqual(['gamma', 'beta', 'moving_mean', 'moving_variance']);
    expect(Object.keys(trained().stateDict({ format: 'keras' }))).toEqual(Object.keys(dict));
    expect(Object.keys(a.stateDict({ format: 'pytorch' }))).toContain('num_batches_tracked');
    const b = trained('pytorch'); // auto-detects the Keras names
    expect(b.loadStateDict(JSON.parse(JSON.stringify(dict))).format).toBe('keras');
    for (const key of ['weight', 'bias', 'runningMean', 'runningVar'] as const) expect(b[key]).toEqual(a[key]);
    expect(b.numBatchesTracked).toBe(0);
  });

  it('affine: false and trackRunningStats: false leave their keys out; prefix', () => {
    expect(Object.keys(trained('pytorch', { affine: false }).stateDict())).toEqual(['running_mean', 'running_var', 'num_batches_tracked']);
    expect(Object.keys(trained('pytorch', { trackRunningStats: false }).stateDict())).toEqual(['weight', 'bias']);
    expect(Object.keys(trained('keras', { trackRunningStats: false }).stateDict())).toEqual(['gamma', 'beta']);
    const dict = { ...trained().stateDict({ prefix: 'features.1.' }), 'features.0.weight': [1, 2] };
    expect(Object.keys(dict)).toContain('features.1.running_var');
    const b = new BatchNorm(fake, 3);
    expect(b.loadStateDict(dict, { prefix: 'features.1.' }).unexpectedKeys).toEqual([]);
    expect(b.numBatchesTracked).toBe(42);
  });

  it('strict load: a missing or extra key is an error naming it, and nothing changes', () => {
    const full = trained().stateDict() as Record<string, unknown>;
    const b = new BatchNorm(fake, 3);
    const before = b.stateDict();
    const { running_var: _dropped, ...missing } = full;
    expect(() => b.loadStateDict(missing)).toThrow(InvalidArgumentError);
    expect(() => b.loadStateDict(missing)).toThrow(/missing keys: "running_var"; unexpected keys: none/);
    expect(() => b.loadStateDict({ ...full, momentum: 0.1 })).toThrow(/missing keys: none; unexpected keys: "momentum"/);
    expect(() => b.loadStateDict({ ...full, gamma: [1, 1, 1] }, { format: 'pytorch' })).toThrow(/unexpected keys: "gamma"/);
    expect(() => new BatchNorm(fake, 3, { affine: false }).loadStateDict(full)).toThrow(/unexpected keys: "weight", "bias"/);
    expect(() => b.loadStateDict(full, { format: 'keras' })).toThrow(/exactly the keras keys "gamma", "beta", "moving_mean", "moving_variance"/);
    expect(b.stateDict()).toEqual(before);
  });

  it('bad values: length (ShapeError), non-numbers, negative variance, bad counter; nothing changes', () => {
    const full = trained().stateDict() as Record<string, unknown>;
    const b = new BatchNorm(fake, 3);
    const before = b.stateDict();
    const bad: Array<[Record<string, unknown>, typeof ShapeError | typeof InvalidArgumentError, RegExp]> = [
      [{ ...full, running_mean: [1, 2] }, ShapeError, /^stateDict\["running_mean"\]: expected length 3 \(numFeatures\), got length 2$/],
      [{ ...full, bias: [1, 2, 3, 4] }, ShapeError, /^stateDict\["bias"\]: expected length 3/],
      [{ ...full, weight: 'abc' }, InvalidArgumentError, /^stateDict\["weight"\]: expected an array of 3 numbers/],
      [{ ...full, weight: [1, null, 3] }, InvalidArgumentError, /^stateDict\["weight"\]\[1\]: expected a finite number/],
      [{ ...full, weight: [1, 1e39, 3] }, InvalidArgumentError, /^stateDict\["weight"\]\[1\]: expected a finite number within float32 range/],
      [{ ...full, running_var: [1, -1, 3] }, InvalidArgumentError, /^stateDict\["running_var"\]\[1\]: expected a variance >= 0/],
      [{ ...full, num_batches_tracked: 1.5 }, InvalidArgumentError, /^stateDict\["num_batches_tracked"\]: expected a non-negative integer/],
      [{ ...full, num_batches_tracked: -1 }, InvalidArgumentError, /num_batches_tracked/],
    ];
    for (const [dict, cls, message] of bad) {
      let thrown: unknown = null;
      try { b.loadStateDict(dict); } catch (error) { thrown = error; }
      expect(thrown, String(message)).toBeInstanceOf(cls);
      expect((thrown as Error).message).toMatch(message);
      expect(b.stateDict()).toEqual(before); // a failed load changes nothing (even keys validated earlier)
    }
    expect(() => b.loadStateDict(null as never)).toThrow(/^stateDict: expected a plain object/);
    expect(() => b.loadStateDict([] as never)).toThrow(InvalidArgumentError);
    expect(() => b.loadStateDict(full, { strict: 'no' as never })).toThrow(/options\.strict/);
    expect(() => b.loadStateDict(full, { format: 'onnx' as never })).toThrow(/options\.format/);
  });

  it('non-strict load loads what matches and reports the rest (typed arrays accepted)', () => {
    const b = new BatchNorm(fake, 3);
    const result = b.loadStateDict({ running_mean: Float32Array.of(1, 2, 3), extra: [1] }, { strict: false });
    expect(result).toEqual({
      format: 'pytorch', missingKeys: ['weight', 'bias', 'running_var', 'num_batches_tracked'], unexpectedKeys: ['extra'],
    });
    expect(Array.from(b.runningMean!)).toEqual([1, 2, 3]);
    expect(Array.from(b.runningVar!)).toEqual([1, 1, 1]);
    expect(b.numBatchesTracked).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Folding

/** Direct 2-D convolution in f64, stride 1, zero padding `pad`. x NCHW or NHWC; weight in `wLayout`. */
function conv2d(
  x: ArrayLike<number>, [N, Cin, H, W]: number[], weight: ArrayLike<number>, [Cout, kh, kw]: number[], bias: ArrayLike<number> | null,
  layout: 'NCHW' | 'NHWC', wLayout: ConvWeightLayout, pad: number,
): { z: Float64Array; absSum: Float64Array; terms: number; shape: number[] } {
  const Ho = H + 2 * pad - kh + 1, Wo = W + 2 * pad - kw + 1;
  const xAt = (n: number, c: number, h: number, w: number) => (layout === 'NCHW' ? ((n * Cin + c) * H + h) * W + w : ((n * H + h) * W + w) * Cin + c);
  const wAt = (o: number, i: number, a: number, b: number) => (wLayout === 'OIHW' ? ((o * Cin + i) * kh + a) * kw + b
    : wLayout === 'OHWI' ? ((o * kh + a) * kw + b) * Cin + i : ((a * kw + b) * Cin + i) * Cout + o);
  const yAt = (n: number, o: number, h: number, w: number) => (layout === 'NCHW' ? ((n * Cout + o) * Ho + h) * Wo + w : ((n * Ho + h) * Wo + w) * Cout + o);
  const z = new Float64Array(N * Cout * Ho * Wo), absSum = new Float64Array(z.length);
  for (let n = 0; n < N; n++) for (let o = 0; o < Cout; o++) for (let h = 0; h < Ho; h++) for (let w = 0; w < Wo; w++) {
    let s = bias ? bias[o] : 0, a = 0;
    for (let i = 0; i < Cin; i++) for (let p = 0; p < kh; p++) for (let q = 0; q < kw; q++) {
      const hh = h + p - pad, ww = w + q - pad;
      if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
      const t = x[xAt(n, i, hh, ww)] * weight[wAt(o, i, p, q)];
      s += t;
      a += Math.abs(t);
    }
    z[yAt(n, o, h, w)] = s;
    absSum[yAt(n, o, h, w)] = a;
  }
  return { z, absSum, terms: Cin * kh * kw + 1, shape: layout === 'NCHW' ? [N, Cout, Ho, Wo] : [N, Ho, Wo, Cout] };
}

function makeBn(seed: number, C: number, affine: boolean) {
  const next = rng(seed);
  return {
    weight: affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null,
    bias: affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null,
    runningMean: Float32Array.from({ length: C }, () => (next() - 0.5) * 10),
    runningVar: Float32Array.from({ length: C }, () => 10 ** (4 * next() - 2)),
    eps: 1e-5,
  };
}

describe.each(BUILDS)('inference folding, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it('layer.foldedAffine() = the eval forward as x·scale + shift', () => {
    for (const layout of ['NCHW', 'NHWC'] as const) {
      const shape = layout === 'NCHW' ? [3, 6, 4, 5] : [3, 4, 5, 6];
      const layer = new BatchNorm(engine, 6, { layout });
      for (let s = 1; s <= 3; s++) layer.forward(batch(s, shape, 5 * s, 3), shape);
      layer.weight!.set([0.5, -2, 1, 3, -0.25, 1e-3]);
      layer.bias!.set([1, 0, -4, 0.5, 100, -1e-3]);
      layer.eval();
      const { scale, shift } = layer.foldedAffine();
      expect(foldedAffine(layer)).toEqual({ scale, shift });
      const x = batch(11, shape, 10, 5);
      const y = layer.forward(x, shape);
      const o = oracleForward(x, shape, { layout, training: false, weight: layer.weight, bias: layer.bias,
        runningMean: layer.runningMean, runningVar: layer.runningVar });
      const C = 6, inner = layout === 'NCHW' ? 20 : 1;
      for (let i = 0; i < x.length; i++) {
        const c = Math.floor(i / inner) % C;
        const folded = x[i] * scale[c] + shift[c];
        const tFold = U32 * (Math.abs(x[i] * scale[c]) + Math.abs(shift[c])) + 8 * U64 * (Math.abs(x[i] * scale[c]) + Math.abs(shift[c]));
        const tEngine = tolY(o.y[i], layer.weight![c], layer.bias![c]);
        expectClose(folded, o.y[i], tFold, `${layout} folded y[${i}] vs oracle`);
        expectClose(y[i], folded, tEngine + tFold, `${layout} eval forward y[${i}] vs folded`);
      }
    }
    expect(() => new BatchNorm(engine, 2, { trackRunningStats: false }).foldedAffine()).toThrow(/layer\.runningMean: expected running statistics/);
  });

  const convCases: Array<{ layout: 'NCHW' | 'NHWC'; wLayout: ConvWeightLayout; affine: boolean; convBias: boolean; k: number; pad: number }> = [
    { layout: 'NCHW', wLayout: 'OIHW', affine: true, convBias: true, k: 3, pad: 1 },
    { layout: 'NCHW', wLayout: 'OIHW', affine: false, convBias: false, k: 1, pad: 0 },
    { layout: 'NHWC', wLayout: 'OHWI', affine: true, convBias: false, k: 3, pad: 0 },
    { layout: 'NHWC', wLayout: 'OHWI', affine: true, convBias: true, k: 2, pad: 1 },
    { layout: 'NHWC', wLayout: 'HWIO', affine: true, convBias: true, k: 3, pad: 1 },
  ];
  for (const cc of convCases) {
    it(`foldIntoConv ${cc.wLayout} (${cc.layout} activations, ${cc.k}x${cc.k}, bias ${cc.convBias}, affine ${cc.affine}) = BN(conv) vs the oracle`, () => {
      for (let seed = 1; seed <= 4; seed++) {
        const next = rng(seed * 31 + cc.k);
        const g = gauss(next);
        const [N, Cin, H, W, Cout] = [2, 3 + seed, 5, 6, 4 + 2 * seed];
        const x = Float32Array.from({ length: N * Cin * H * W }, () => 2 * g() + 1);
        const wt = Float32Array.from({ length: Cout * Cin * cc.k * cc.k }, () => g() / cc.k);
        const cb = cc.convBias ? Float32Array.from({ length: Cout }, () => g()) : null;
        const bn = makeBn(seed, Cout, cc.affine);
        const wBefore = wt.slice();
        const folded = foldIntoConv(wt, cb, bn, { layout: cc.wLayout });
        expect(wt).toEqual(wBefore); // inputs untouched
        expect(folded.weight.length).toBe(wt.length);

        // Exact composition: oracle eval BN of the f64 conv.
        const conv = conv2d(x, [N, Cin, H, W], wt, [Cout, cc.k, cc.k], cb, cc.layout, cc.wLayout, cc.pad);
        const o = oracleForward(conv.z, conv.shape, { layout: cc.layout, training: false, ...bn });
        // Folded conv (f64 sums of the f32 folded weights).
        const fz = conv2d(x, [N, Cin, H, W], folded.weight, [Cout, cc.k, cc.k], folded.bias, cc.layout, cc.wLayout, cc.pad);
        // Unfolded path: conv output as float32, then the engine's eval forward.
        const ye = engine.forward(Float32Array.from(conv.z), conv.shape, { layout: cc.layout, training: false, ...bn }).y;
        const chOf = (i: number) => (cc.layout === 'NCHW' ? Math.floor(i / (conv.shape[2] * conv.shape[3])) % Cout : i % Cout);
        for (let i = 0; i < o.y.length; i++) {
          const c = chOf(i);
          const scale = Math.abs((bn.weight?.[c] ?? 1) / Math.sqrt(bn.runningVar[c] + bn.eps));
          const beta = Math.abs(bn.bias?.[c] ?? 0);
          const bPrime = Math.abs(folded.bias[c]);
          const tFold = (U32 + 4 * U64) * conv.absSum[i] * scale + (U32 + 8 * U64) * bPrime
            + 2 * gamma64(conv.terms + 8) * (fz.absSum[i] + bPrime + Math.abs((cb?.[c] ?? 0) - bn.runningMean[c]) * scale + beta);
          const tUnfold = U32 * Math.abs(conv.z[i]) * scale + tolY(o.y[i], bn.weight?.[c] ?? 1, bn.bias?.[c] ?? 0);
          expectClose(fz.z[i], o.y[i], tFold, `folded y[${i}] vs oracle (seed ${seed})`);
          expectClose(ye[i], o.y[i], tUnfold, `conv → engine eval y[${i}] vs oracle (seed ${seed})`);
          expectClose(fz.z[i], ye[i], tFold + tUnfold, `folded vs unfolded y[${i}] (seed ${seed})`);
        }
      }
    });
  }

  for (const wLayout of ['OI', 'IO'] as const) {
    it(`foldIntoLinear ${wLayout} = BN(linear) vs the oracle`, () => {
      const next = rng(wLayout === 'OI' ? 5 : 6);
      const g = gauss(next);
      const [N, In, Out] = [7, 9, 5];
      const x = Float32Array.from({ length: N * In }, () => g());
      const w = Float32Array.from({ length: Out * In }, () => g());
      const b = Float32Array.from({ length: Out }, () => g());
      const bn = makeBn(9, Out, true);
      const folded = foldIntoLinear(w, b, bn, { layout: wLayout });
      const wAt = (o: number, i: number) => (wLayout === 'OI' ? o * In + i : i * Out + o);
      const z = new Float64Array(N * Out), abs = new Float64Array(N * Out), fz = new Float64Array(N * Out), fabs = new Float64Array(N * Out);
      for (let n = 0; n < N; n++) for (let o = 0; o < Out; o++) {
        let s = b[o], a = 0, fs = folded.bias[o], fa = 0;
        for (let i = 0; i < In; i++) {
          s += x[n * In + i] * w[wAt(o, i)]; a += Math.abs(x[n * In + i] * w[wAt(o, i)]);
          fs += x[n * In + i] * folded.weight[wAt(o, i)]; fa += Math.abs(x[n * In + i] * folded.weight[wAt(o, i)]);
        }
        z[n * Out + o] = s; abs[n * Out + o] = a; fz[n * Out + o] = fs; fabs[n * Out + o] = fa;
      }
      const o = oracleForward(z, [N, Out], { training: false, ...bn });
      for (let i = 0; i < z.length; i++) {
        const c = i % Out;
        const scale = Math.abs(bn.weight![c] / Math.sqrt(bn.runningVar[c] + bn.eps));
        const bPrime = Math.abs(folded.bias[c]);
        const t = (U32 + 4 * U64) * abs[i] * scale + (U32 + 8 * U64) * bPrime
          + 2 * gamma64(In + 9) * (fabs[i] + bPrime + Math.abs(b[c] - bn.runningMean[c]) * scale + Math.abs(bn.bias![c]));
        expectClose(fz[i], o.y[i], t, `folded linear y[${i}]`);
      }
    });
  }

  it('PyTorch fuse semantics on a hand case, and argument errors', () => {
    // W = [[1, 2], [3, 4]] (Out 2, In 2), b = null; gamma [2, 1], beta [0, 1], rm [1, -1], rv [3, 0], eps 1:
    // scale = [2/2, 1/1] = [1, 1] -> W' = W, b' = (0 - rm)·scale + beta = [-1, 2].
    const bn = { weight: [2, 1], bias: [0, 1], runningMean: [1, -1], runningVar: [3, 0], eps: 1 };
    expect(foldIntoLinear([1, 2, 3, 4], null, bn)).toEqual({ weight: Float32Array.of(1, 2, 3, 4), bias: Float32Array.of(-1, 2) });
    expect(foldIntoLinear([1, 2, 3, 4], null, bn, { layout: 'IO' }).weight).toEqual(Float32Array.of(1, 2, 3, 4));
    const bn2 = { ...bn, weight: [4, 1] }; // scale [2, 1]
    expect(foldIntoConv([1, 1, 1, 1, 5, 5, 5, 5], [1, 1], bn2).weight).toEqual(Float32Array.of(2, 2, 2, 2, 5, 5, 5, 5));
    expect(foldIntoConv([1, 5, 1, 5, 1, 5, 1, 5], [1, 1], bn2, { layout: 'HWIO' }).weight).toEqual(Float32Array.of(2, 5, 2, 5, 2, 5, 2, 5));
    expect(foldIntoConv([1, 1, 1, 1, 5, 5, 5, 5], [1, 1], bn2).bias).toEqual(Float32Array.of(0, 3));
    expect(() => foldIntoConv([1, 2, 3], null, bn)).toThrow(ShapeError);
    expect(() => foldIntoConv([1, 2, 3, 4], [1], bn)).toThrow(/^convBias: expected length 2/);
    expect(() => foldIntoConv([1, 2], null, { ...bn, runningVar: null })).toThrow(/^bn\.runningVar: expected running statistics/);
    expect(() => foldIntoConv([1, 2], null, bn, { layout: 'NCHW' as never })).toThrow(/^options\.layout/);
    expect(() => foldIntoLinear([1, 2], null, { ...bn, weight: [1, 2, 3] })).toThrow(/^bn\.weight: expected length 2/);
    expect(() => foldIntoLinear([1, 2], null, { ...bn, eps: 0 })).toThrow(/^bn\.eps/);
    expect(() => foldIntoLinear('ab' as never, null, bn)).toThrow(InvalidArgumentError);
  });
});
