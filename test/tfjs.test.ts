// The TensorFlow.js adapter (src/tfjs/) on tfjs's cpu backend (@tensorflow/tfjs-backend-cpu);
// test/tfjs-wasm.test.ts runs the same comparisons on the wasm backend. Shared helpers, the
// parameter forms and ours' bound: test/helpers/tfjs.ts.
//
// Kernel override: ours vs tfjs's own FusedBatchNorm kernel and vs the float64 oracle, x of rank
// 2..5 and every parameter form tfjs accepts. Tolerance: tfjs's cpu kernel evaluates
// off + (x − m)·s / sqrt(v + eps) in JavaScript doubles and rounds once to float32, so it is
// within u·|y| of the exact value (u = 2^-24, plus double rounding, < 2^-50 relative). Ours is
// within u·(3·|t| + |y|) (OURS_BOUND, derived in the helper), t = (x − m)·s/sqrt(v + eps).
// Ours vs tfjs: 3u·|t| + 2u·|y| (+ 2^-149 for subnormals).
//
// Layer: model.fit losses with our layer vs tfjs's own layer from identical initial weights
// (NHWC), our NCHW (axis 1) results vs the oracle and tfjs's own (wrong) ones, save/load.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tfc from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { createEngine, type Engine } from '../src/engine.js';
import { oracleBackward, oracleForward } from '../src/oracle/batchnorm.js';
import { InvalidArgumentError } from '../src/errors.js';
import {
  LAYER_CLASS_NAME, batchNormalization, registerTfjsKernels, useTfjs,
  type TfjsKernelRegistration, type TfjsLayersNamespace,
} from '../src/tfjs/index.js';
import { U32 } from './helpers/numeric.js';
import { tolDx, tolY } from './helpers/tolerance.js';
import {
  BN_FORMS, expectEpsMismatchDetected, expectFitMatchesTfjs, expectKernelsAgree, positive, randn, runBothKernels, tfAll,
} from './helpers/tfjs.js';

const tf = tfc;
let engine: Engine;

beforeAll(async () => {
  await tf.setBackend('cpu');
  engine = await createEngine();
});

/** tfjs's cpu kernel vs exact: one rounding of a double result (see the header). */
const CPU_BOUND = (_t: number, y: number) => U32 * Math.abs(y);

describe('registerTfjsKernels: FusedBatchNorm on cpu', () => {
  let registration: TfjsKernelRegistration | null = null;
  afterAll(() => registration?.unregister());

  const original = tf.getKernel('FusedBatchNorm', 'cpu')!;
  const register = () => registerTfjsKernels(tf, engine, { backends: ['cpu'] });

  it.each(BN_FORMS)('%s: ours = tfjs\'s kernel and the oracle within the derived float32 bound', (_, xShape, p) => {
    for (const eps of [1e-3, 1e-5]) {
      const r = runBothKernels(register, xShape, p, eps, 7 + xShape.length);
      expect(r.stats, 'our kernel ran').toEqual({ calls: 1, fallbacks: 0 });
      expectKernelsAgree(r, CPU_BOUND, `x [${xShape}] eps ${eps}`);
    }
  });

  it('the bound is tight enough to catch an eps off by 1e-4 relative (the check can fail)', () => {
    const a = runBothKernels(register, [8, 7, 7, 12], { mean: [12], variance: [12] }, 1e-3, 3);
    const b = runBothKernels(register, [8, 7, 7, 12], { mean: [12], variance: [12] }, 1e-3 * (1 + 1e-4), 3);
    const exceeded = a.theirs.some((v, i) => Math.abs(v - b.ours[i]!) > 3 * U32 * Math.abs(v) + 2 * U32 * Math.abs(v) + 2 ** -149);
    expect(exceeded).toBe(true);
  });

  it('inputs we do not express go to the original kernel, bit for bit: a period not dividing the size, eps 0, int32', () => {
    registration?.unregister();
    const x = tf.tensor(randn(1, 10), [2, 5]);
    const m4 = tf.tensor(randn(2, 4)), v4 = tf.tensor(positive(3, 4));
    const theirs = tf.batchNorm(x, m4, v4, undefined, undefined, 1e-3).dataSync();
    const theirsEps0 = tf.batchNorm(x, tf.zeros([5]), tf.ones([5]), undefined, undefined, 0).dataSync();
    registration = registerTfjsKernels(tf, engine);
    expect(registration.backends).toEqual(['cpu']); // wasm is not imported here
    expect(Array.from(tf.batchNorm(x, m4, v4, undefined, undefined, 1e-3).dataSync())).toEqual(Array.from(theirs));
    // tfjs treats eps 0 as its default 1e-3 (batchNorm_: `if (varianceEpsilon == null)` — 0 passes through to the kernel)
    expect(Array.from(tf.batchNorm(x, tf.zeros([5]), tf.ones([5]), undefined, undefined, 0).dataSync())).toEqual(Array.from(theirsEps0));
    expect(registration.stats).toEqual({ calls: 0, fallbacks: 2 });
    tf.dispose([x, m4, v4]);
  });

  it('unregister() restores the original kernel object; bad arguments are typed errors', () => {
    registration?.unregister();
    registration = null;
    const r = registerTfjsKernels(tf, engine, { backends: ['cpu'] });
    expect(tf.getKernel('FusedBatchNorm', 'cpu')).not.toBe(original);
    r.unregister();
    r.unregister();
    expect(tf.getKernel('FusedBatchNorm', 'cpu')).toBe(original);
    expect(() => registerTfjsKernels(tf, engine, { backends: ['webgl' as 'cpu'] })).toThrow(InvalidArgumentError);
    expect(() => registerTfjsKernels(tf, engine, { backends: ['wasm'] })).toThrow(/tfjs-backend-wasm/);
    expect(() => registerTfjsKernels(tf, {} as Engine)).toThrow(InvalidArgumentError);
    expect(tf.getKernel('FusedBatchNorm', 'cpu')).toBe(original);
  });
});

describe('batchNormalization: a tf.layers.Layer with our forward and gradient', () => {
  it('needs useTfjs(tf, engine) first', () => {
    expect(() => batchNormalization(engine, {})).toThrow(/useTfjs/);
    expect(() => useTfjs({} as TfjsLayersNamespace, engine)).toThrow(InvalidArgumentError);
  });

  beforeAll(() => {
    tf.getKernel('FusedBatchNorm', 'cpu'); // tfjs's own kernel: no override in this block
  });

  // Both models round every op's output to float32 (u = 2^-24 relative). One step's forward and
  // backward is a chain of about 30 ops, each adding at most one rounding relative to its own
  // output (tfjs's cpu kernels accumulate sums, and dot products per block of 48 terms, in
  // doubles); the per-op error then propagates through the SGD updates, which, at lr 0.05 on this
  // well-conditioned model, do not amplify it (|1 − lr·λ| < 1). Bound: 64 roundings per step,
  // accumulated over the steps taken (2 per epoch): rel. 64·u·(steps + 1).
  const PER_STEP = 64;

  it('NHWC: model.fit losses, weights and moving statistics match tfjs\'s own layer within float32 rounding', async () => {
    await expectFitMatchesTfjs(engine, PER_STEP);
  });

  it('the loss comparison can fail: our layer with epsilon 1e-5 against tfjs\'s default 1e-3 is outside the bound', async () => {
    await expectEpsMismatchDetected(engine, PER_STEP);
  });

  describe('NCHW (axis 1)', () => {
    const shape = [4, 3, 5, 6];
    const [N, C, H, W] = shape as [number, number, number, number];
    const xData = randn(31, N * C * H * W, 2, 1.5);
    const gammaData = Float32Array.from(randn(32, C), (v) => 1 + 0.3 * v), betaData = randn(33, C, 0.5);
    const dyData = randn(34, xData.length);

    function layerWithWeights(make: () => tfl.layers.Layer) {
      const layer = make();
      layer.build(shape);
      layer.setWeights([tf.tensor(gammaData), tf.tensor(betaData), tf.zeros([C]), tf.ones([C])]);
      return layer;
    }

    it('training forward and gradient match the oracle; the moving statistics take the Keras update', () => {
      useTfjs(tfAll, engine);
      const layer = layerWithWeights(() => batchNormalization(engine, { axis: 1, momentum: 0.9 }) as unknown as tfl.layers.Layer);
      const x = tf.tensor(xData, shape), dy = tf.tensor(dyData, shape);
      const y = (layer.apply(x, { training: true }) as tfc.Tensor).dataSync();
      const ref = oracleForward(xData, shape, { training: true, weight: gammaData, bias: betaData, eps: 1e-3 });
      for (let i = 0; i < y.length; i++) {
        const c = Math.floor(i / (H * W)) % C;
        expect(Math.abs(y[i]! - ref.y[i]!), `y[${i}]`).toBeLessThanOrEqual(tolY(ref.y[i]!, gammaData[c]!, betaData[c]!));
      }
      // moving = 0.9 · moving + 0.1 · batch (biased variance), float32
      const [, , mm, mv] = layer.getWeights().map((w) => w.dataSync());
      const n = N * H * W;
      for (let c = 0; c < C; c++) {
        expect(mm![c]).toBeCloseTo(0.1 * ref.mean[c]!, 6);
        expect(mv![c]).toBeCloseTo(0.9 + 0.1 * (ref.m2 ? ref.m2[c]! / n : 1 / ref.invStd[c]! ** 2 - 1e-3), 5);
      }

      const gradLayer = layerWithWeights(() => batchNormalization(engine, { axis: 1 }) as unknown as tfl.layers.Layer);
      const dx = tf.grad((t: tfc.Tensor) => gradLayer.apply(t, { training: true }) as tfc.Tensor)(x, dy).dataSync();
      const refB = oracleBackward(dyData, xData, shape, { training: true, weight: gammaData, mean: ref.mean, invStd: ref.invStd });
      for (let c = 0; c < C; c++) {
        let sumAbsDy = 0, sumAbsDyXmu = 0, sumDy = 0, sumDyXmu = 0;
        const idx: number[] = [];
        for (let b = 0; b < N; b++) for (let s = 0; s < H * W; s++) idx.push((b * C + c) * H * W + s);
        for (const i of idx) {
          const xmu = xData[i]! - ref.mean[c]!;
          sumAbsDy += Math.abs(dyData[i]!); sumAbsDyXmu += Math.abs(dyData[i]! * xmu); sumDy += dyData[i]!; sumDyXmu += dyData[i]! * xmu;
        }
        const invStd = ref.invStd[c]!;
        const facts = { n, sumAbsDy, sumAbsDyXmu, invStd, k1: sumDy / n, k2: (invStd * invStd * sumDyXmu) / n, k3: gammaData[c]! * invStd };
        for (const i of idx) {
          expect(Math.abs(dx[i]! - refB.dx[i]!), `dx[${i}]`).toBeLessThanOrEqual(tolDx(dyData[i]!, xData[i]! - ref.mean[c]!, facts));
        }
      }
      tf.dispose([x, dy]);
    });

    it('tfjs\'s own batchNormalization({ axis: 1 }) and tf.batchNorm with [C,1,1] statistics are wrong on NCHW', () => {
      const layer = layerWithWeights(() => tfl.layers.batchNormalization({ axis: 1 }));
      const x = tf.tensor(xData, shape);
      const ref = oracleForward(xData, shape, { training: true, weight: gammaData, bias: betaData, eps: 1e-3 });
      const maxErr = (v: ArrayLike<number>) => Array.from(v).reduce((m, y, i) => Math.max(m, Math.abs(y - ref.y[i]!)), 0);
      const theirLayer = (layer.apply(x, { training: true }) as tfc.Tensor).dataSync();
      const { mean, variance } = tf.moments(x, [0, 2, 3]);
      const c11 = (t: tfc.Tensor) => tf.reshape(t, [C, 1, 1]);
      const theirOp = tf.batchNorm(x, c11(mean), c11(variance), c11(tf.tensor(betaData)), c11(tf.tensor(gammaData)), 1e-3).dataSync();
      expect(maxErr(theirLayer)).toBeGreaterThan(0.1);
      expect(maxErr(theirOp)).toBeGreaterThan(0.1);
      // and ours, same call:
      useTfjs(tfAll, engine);
      const ours = layerWithWeights(() => batchNormalization(engine, { axis: 1 }) as unknown as tfl.layers.Layer);
      expect(maxErr((ours.apply(x, { training: true }) as tfc.Tensor).dataSync())).toBeLessThan(1e-5);
      tf.dispose([x, mean, variance]);
    });

    it('a model with axis 1 trains with model.fit (loss decreases), inference uses the moving statistics', async () => {
      useTfjs(tfAll, engine);
      const model = tfl.sequential({ layers: [
        tfl.layers.conv2d({ filters: 4, kernelSize: 1, inputShape: [3, 5, 6], dataFormat: 'channelsFirst' }),
        batchNormalization(engine, { axis: 1 }) as unknown as tfl.layers.Layer, tfl.layers.flatten(), tfl.layers.dense({ units: 2 }),
      ] });
      model.compile({ optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError' });
      const xs = tf.tensor(randn(41, 8 * 90, 1, 2), [8, 3, 5, 6]), ys = tf.tensor(randn(42, 16), [8, 2]);
      const h = (await model.fit(xs, ys, { epochs: 10, batchSize: 8, shuffle: false, verbose: 0 })).history.loss as number[];
      expect(h.at(-1)!).toBeLessThan(h[0]! * 0.8);
      const bn = model.layers[1]!;
      const [, , mm, mv] = bn.getWeights().map((w) => Array.from(w.dataSync()));
      // inference: y = (h − moving_mean)/sqrt(moving_variance + eps)·gamma + beta on the conv output
      const hOut = (model.layers[0]!.apply(xs) as tfc.Tensor);
      const yInf = (bn.apply(hOut, { training: false }) as tfc.Tensor).dataSync();
      const [g, b] = bn.getWeights().map((w) => w.dataSync());
      const ref = oracleForward(hOut.dataSync(), [8, 4, 5, 6], { training: false, weight: g, bias: b, runningMean: mm, runningVar: mv, eps: 1e-3 });
      for (let i = 0; i < yInf.length; i++) {
        const c = Math.floor(i / 30) % 4;
        expect(Math.abs(yInf[i]! - ref.y[i]!)).toBeLessThanOrEqual(tolY(ref.y[i]!, g![c]!, b![c]!));
      }
      tf.dispose([xs, ys, hOut]);
    });
  });

  it('save / load through tfjs\'s weights format (in-memory IOHandler): config, names and weights bit-exact', async () => {
    useTfjs(tfAll, engine);
    const model = tfl.sequential({ layers: [
      tfl.layers.dense({ units: 5, inputShape: [7] }),
      batchNormalization(engine, { momentum: 0.8, epsilon: 1e-4, gammaInitializer: 'randomNormal', betaRegularizer: 'l1l2' }) as unknown as tfl.layers.Layer,
    ] });
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
    const xs = tf.tensor(randn(51, 8 * 7), [8, 7]), ys = tf.tensor(randn(52, 40), [8, 5]);
    await model.fit(xs, ys, { epochs: 2, batchSize: 4, shuffle: false, verbose: 0 });
    let artifacts: tfc.io.ModelArtifacts | null = null;
    await model.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const saved = artifacts as unknown as tfc.io.ModelArtifacts;
    const topology = JSON.stringify(saved.modelTopology);
    expect(topology).toContain(`"class_name":"${LAYER_CLASS_NAME}"`);
    const names = saved.weightSpecs!.map((s) => s.name.split('/').at(-1));
    expect(names).toEqual(['kernel', 'bias', 'gamma', 'beta', 'moving_mean', 'moving_variance']);

    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(saved));
    const bn = loaded.layers[1]!;
    expect(bn.getClassName()).toBe(LAYER_CLASS_NAME);
    // JSON drops undefined (an initializer's unset seed) and keeps null: compare as JSON does.
    const asJson = (c: object) => JSON.stringify(c, (_, v: unknown) => v ?? undefined);
    expect(asJson(bn.getConfig())).toBe(asJson(model.layers[1]!.getConfig()));
    expect((bn as unknown as { engine: Engine }).engine).toBe(engine);
    const bits = (m: tfl.LayersModel) => m.getWeights().map((w) => Array.from(new Uint32Array(w.dataSync().buffer.slice(0))));
    expect(bits(loaded)).toEqual(bits(model));
    const p = (m: tfl.LayersModel) => Array.from(new Uint32Array((m.predict(xs) as tfc.Tensor).dataSync().slice().buffer));
    expect(p(loaded)).toEqual(p(model));
    tf.dispose([xs, ys]);
  });
});
