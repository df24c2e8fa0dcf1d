// The BatchNorm layer: PyTorch's module state machine (weight, bias, running_mean,
// running_var, num_batches_tracked, train/eval) on top of engine.forward/backward, checked
// against the oracle stepped the same way.
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm } from '../src/layer.js';
import type { Engine } from '../src/engine.js';
import { ShapeError } from '../src/errors.js';
import { oracleBackward, oracleForward } from '../src/oracle/batchnorm.js';
import { BUILDS, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { expectClose, gauss, product, rng, ulp32 } from './helpers/numeric.js';
import { tolY } from './helpers/tolerance.js';

function batch(seed: number, shape: number[], center = 3, spread = 2): Float32Array {
  const g = gauss(rng(seed));
  return Float32Array.from({ length: product(shape) }, () => center + spread * g());
}

describe.each(BUILDS)('BatchNorm layer, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it('starts as PyTorch does: weight 1, bias 0, running mean 0, var 1, training', () => {
    const bn = new BatchNorm(engine, 3);
    expect(Array.from(bn.weight!)).toEqual([1, 1, 1]);
    expect(Array.from(bn.bias!)).toEqual([0, 0, 0]);
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0]);
    expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1]);
    expect(bn.numBatchesTracked).toBe(0);
    expect(bn.training).toBe(true);
    expect([bn.eps, bn.momentum]).toEqual([1e-5, 0.1]);
  });

  for (const momentum of [0.1, 0.3, null]) {
    it(`tracks running statistics over 6 training steps (momentum ${momentum}), then eval uses them`, () => {
      const shape = [4, 5, 3, 3];
      const bn = new BatchNorm(engine, 5, { momentum });
      // The oracle stepped by hand: factor = momentum, or 1 / num_batches_tracked (cumulative).
      let rm: Float64Array = new Float64Array(5), rv: Float64Array = new Float64Array(5).fill(1);
      for (let step = 1; step <= 6; step++) {
        const x = batch(step, shape, step, 1 + step / 3);
        bn.forward(x, shape);
        const factor = momentum ?? 1 / step;
        const o = oracleForward(x, shape, {
          training: true, runningMean: Float32Array.from(rm), runningVar: Float32Array.from(rv), momentum: factor,
        });
        rm = o.runningMean!; rv = o.runningVar!;
        expect(bn.numBatchesTracked).toBe(step);
        for (let c = 0; c < 5; c++) {
          expectClose(bn.runningMean![c], rm[c], 2 * ulp32(rm[c]), `step ${step} running_mean[${c}]`);
          expectClose(bn.runningVar![c], rv[c], 2 * ulp32(rv[c]), `step ${step} running_var[${c}]`);
          rm[c] = bn.runningMean![c]; rv[c] = bn.runningVar![c]; // the layer stores f32
        }
      }
      if (momentum === null) {
        // Cumulative average: the running mean is the plain average of the six batch means.
        const means = [1, 2, 3, 4, 5, 6].map((s) => oracleForward(batch(s, shape, s, 1 + s / 3), shape, { training: true }).mean);
        for (let c = 0; c < 5; c++) {
          const avg = means.reduce((a, m) => a + m[c], 0) / 6;
          expectClose(bn.runningMean![c], avg, 8 * ulp32(avg), `cumulative running_mean[${c}]`);
        }
      }
      bn.eval();
      const x = batch(99, shape);
      const before = bn.runningMean!.slice();
      const y = bn.forward(x, shape);
      const o = oracleForward(x, shape, { training: false, runningMean: bn.runningMean, runningVar: bn.runningVar });
      for (let i = 0; i < y.length; i++) expectClose(y[i], o.y[i], tolY(o.y[i], 1, 0), `eval y[${i}]`);
      expect(bn.numBatchesTracked).toBe(6);
      expect(bn.runningMean).toEqual(before);
    });
  }

  it('without running statistics, eval normalizes with the batch and tracks nothing', () => {
    const bn = new BatchNorm(engine, 2, { trackRunningStats: false }).eval();
    expect(bn.runningMean).toBeNull();
    const x = batch(5, [3, 2, 4]);
    const y = bn.forward(x, [3, 2, 4]);
    const o = oracleForward(x, [3, 2, 4], { training: true });
    for (let i = 0; i < y.length; i++) expectClose(y[i], o.y[i], tolY(o.y[i], 1, 0), `y[${i}]`);
    expect(bn.numBatchesTracked).toBe(0);
    // ... and so its backward is the training-mode one.
    const dy = batch(6, [3, 2, 4], 0, 1);
    const dx = bn.backward(dy);
    const ob = oracleBackward(dy, x, [3, 2, 4], { training: true, mean: o.mean, invStd: o.invStd });
    for (let i = 0; i < dx.length; i++) expectClose(dx[i], ob.dx[i], 1e-5, `dx[${i}]`);
  });

  for (const layout of ['NCHW', 'NHWC'] as const) {
    it(`backward leaves gradWeight and gradBias (${layout}, training and eval)`, () => {
      const shape = layout === 'NCHW' ? [3, 4, 5] : [3, 5, 4];
      const bn = new BatchNorm(engine, 4, { layout });
      bn.weight!.set([0.5, -1, 2, 1.5]);
      bn.bias!.set([0, 1, -1, 0.5]);
      for (const training of [true, false]) {
        bn.train(training);
        const x = batch(11, shape), dy = batch(12, shape, 0, 1);
        const xCopy = x.slice();
        const y = bn.forward(x, shape);
        x.fill(0); // the layer kept its own copy of x for backward
        const dx = bn.backward(dy);
        const stats = training ? oracleForward(xCopy, shape, { layout, training: true }) : null;
        const mean = stats ? Float32Array.from(stats.mean) : bn.runningMean!;
        const invStd = stats ? Float32Array.from(stats.invStd) : Float32Array.from(bn.runningVar!, (v) => 1 / Math.sqrt(v + 1e-5));
        const ob = oracleBackward(dy, xCopy, shape, { layout, training, weight: bn.weight, mean, invStd });
        expect(y.length).toBe(x.length);
        for (let i = 0; i < dx.length; i++) expectClose(dx[i], ob.dx[i], 1e-5, `${training} dx[${i}]`);
        for (let c = 0; c < 4; c++) {
          expectClose(bn.gradWeight![c], ob.dweight[c], 1e-4, `gradWeight[${c}]`);
          expectClose(bn.gradBias![c], ob.dbias[c], 1e-5, `gradBias[${c}]`);
        }
      }
    });
  }

  it('affine: false has no weight, bias or their gradients', () => {
    const bn = new BatchNorm(engine, 3, { affine: false });
    expect(bn.weight).toBeNull();
    const x = batch(1, [2, 3, 2]);
    bn.forward(x, [2, 3, 2]);
    bn.backward(batch(2, [2, 3, 2], 0, 1));
    expect(bn.gradWeight).toBeNull();
    expect(bn.gradBias).toBeNull();
  });

  it('a failed forward changes no state', () => {
    const bn = new BatchNorm(engine, 3);
    bn.forward(batch(1, [2, 3, 2]), [2, 3, 2]);
    const state = [bn.runningMean!.slice(), bn.runningVar!.slice(), bn.numBatchesTracked];
    expect(() => bn.forward(batch(2, [2, 4, 2]), [2, 4, 2])).toThrow(ShapeError);
    expect(() => bn.forward(batch(3, [1, 3, 1]), [1, 3, 1])).toThrow(/more than 1 value per channel/);
    expect([bn.runningMean, bn.runningVar, bn.numBatchesTracked]).toEqual(state);
    expect(() => new BatchNorm(engine, 3).backward(new Float32Array(6))).toThrow(/no forward/);
    expect(() => new BatchNorm({} as Engine, 3)).toThrow(/engine: expected an Engine from createEngine\(\), got Object/);
    expect(() => new BatchNorm(engine, 2 ** 40)).toThrow(/numFeatures: expected an integer in \[1, 1073741824\], got 1099511627776/);
  });
});
