// Shared by the TensorFlow.js adapter tests: test/tfjs.test.ts (tfjs's cpu backend) and
// test/tfjs-wasm.test.ts (its wasm backend). Each file sets its backend; everything here runs on
// whichever backend is current.
//
// Kernel override. runBothKernels runs tf.batchNorm on seeded tensors twice, with tfjs's own
// FusedBatchNorm (nothing registered) and with ours (registered for that call only), and computes
// the exact values with the float64 oracle on the call's tiled-NHWC view ([size / L, L], each
// parameter repeated to L values, L the lcm of the parameter lengths: how tfjs indexes them).
// Ours vs exact: ours rounds d = x − m, scale = s·invStd (invStd from f64), d·scale and the sum
// with offset (the running mean is a float32, so meanLo = 0 and shift = offset exactly): within
// u·(3·|t| + |y|) of the exact value, t = (x − m)·s/sqrt(v + eps), u = 2^-24 (+ 2^-149 for
// subnormals): OURS_BOUND. Each test file states tfjs's own kernel's bound on its backend; ours
// vs tfjs's is the sum of the two.
//
// Layer. nhwcModel is dense(6) → BN → flatten → dense(2) on [N, 4, 4, 3] inputs (channels last);
// expectFitMatchesTfjs trains it with our layer and with tfjs's own from identical initial weights
// and compares the model.fit losses and the final weights within a number of float32 roundings
// per SGD step that each test file derives for its backend; expectEpsMismatchDetected shows the
// same comparison failing for a wrong epsilon.
import { expect } from 'vitest';
import * as tfc from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { Engine } from '../../src/engine.js';
import { oracleForward } from '../../src/oracle/batchnorm.js';
import {
  batchNormalization, planFusedBatchNorm, useTfjs, type TfjsKernelRegistration, type TfjsLayersNamespace,
} from '../../src/tfjs/index.js';
import { U32, gauss, product, rng } from './numeric.js';

const tf = tfc;
export const tfAll: TfjsLayersNamespace = { ...tfc, layers: tfl.layers };

/** Seeded N(shift, scale²) float32 values. */
export function randn(seed: number, n: number, scale = 1, shift = 0): Float32Array {
  const g = gauss(rng(seed));
  const out = new Float32Array(n); // a plain loop: Float32Array.from({ length }, f) is slow on millions
  for (let i = 0; i < n; i++) out[i] = g() * scale + shift;
  return out;
}
/** Seeded values >= 0.25 (variances). */
export function positive(seed: number, n: number): Float32Array {
  const out = randn(seed, n);
  for (let i = 0; i < n; i++) out[i] = 0.25 + out[i]! * out[i]!;
  return out;
}

/** The shapes of tf.batchNorm's parameters (undefined: not passed). */
export interface BnParamShapes { mean: number[]; variance: number[]; scale?: number[]; offset?: number[] }

/** x shapes and parameter forms that tf.batchNorm accepts (any rank; parameters indexed mod their length). */
export const BN_FORMS: [string, number[], BnParamShapes][] = [
  ['rank 2, [C]', [6, 5], { mean: [5], variance: [5], scale: [5], offset: [5] }],
  ['rank 3, [C]', [3, 4, 7], { mean: [7], variance: [7], scale: [7], offset: [7] }],
  ['rank 4 NHWC [8,7,7,12], [C]', [8, 7, 7, 12], { mean: [12], variance: [12], scale: [12], offset: [12] }],
  ['rank 4, [1,1,1,C] parameters', [2, 3, 3, 6], { mean: [1, 1, 1, 6], variance: [1, 1, 1, 6], scale: [1, 1, 1, 6], offset: [1, 1, 1, 6] }],
  ['rank 4, [C,1,1] parameters (tfjs indexes them mod C over the flat index: reproduced, not fixed)', [2, 5, 3, 4], { mean: [5, 1, 1], variance: [5, 1, 1], scale: [5, 1, 1], offset: [5, 1, 1] }],
  ['rank 5, [C]', [2, 3, 2, 4, 3], { mean: [3], variance: [3], scale: [3], offset: [3] }],
  ['no scale, no offset', [4, 3, 3, 5], { mean: [5], variance: [5] }],
  ['rank 2, offset only', [9, 4], { mean: [4], variance: [4], offset: [4] }],
  ['rank 3, scale only', [2, 5, 6], { mean: [6], variance: [6], scale: [6] }],
  ['scalar-length scale and offset ([1]) with [C] statistics', [3, 4, 6], { mean: [6], variance: [6], scale: [1], offset: [1] }],
  ['mixed periods: mean [2], variance [3], scale [6] (lcm 6)', [4, 6], { mean: [2], variance: [3], scale: [6], offset: [1] }],
  ['parameters longer than the last axis: [H·W·C] = [3,4,5]', [2, 3, 4, 5], { mean: [3, 4, 5], variance: [3, 4, 5], scale: [3, 4, 5], offset: [3, 4, 5] }],
  ['C = 1', [5, 1], { mean: [1], variance: [1], scale: [1], offset: [1] }],
];

export interface KernelRun {
  /** tfjs's own kernel. */
  theirs: Float32Array;
  /** Ours (registered for this call). */
  ours: Float32Array;
  /** The registration's stats after our call. */
  stats: { calls: number; fallbacks: number };
  /** The oracle's y (float64). */
  exact: Float64Array;
  /** exact − offset: the normalized, scaled term t of each value. */
  t: Float64Array;
}

/** ours vs exact (see the header): 3u·|t| + u·|y| + 2^-149. */
export const OURS_BOUND = (t: number, y: number) => 3 * U32 * Math.abs(t) + U32 * Math.abs(y) + 2 ** -149;

/**
 * tf.batchNorm on seeded tensors with tfjs's kernel, then with `register()`'s (unregistered
 * after the call), and the oracle's values. Everything it allocates is disposed.
 */
export function runBothKernels(
  register: () => TfjsKernelRegistration, xShape: number[], p: BnParamShapes, eps: number, seed: number,
): KernelRun {
  const x = tf.tensor(randn(seed, product(xShape), 2, 0.5), xShape);
  const mk = (shape: number[] | undefined, i: number, pos = false) =>
    shape === undefined ? undefined : tf.tensor(pos ? positive(seed + i, product(shape)) : randn(seed + i, product(shape)), shape);
  const mean = mk(p.mean, 1)!, variance = mk(p.variance, 2, true)!, scale = mk(p.scale, 3), offset = mk(p.offset, 4);
  const run = () => {
    const y = tf.batchNorm(x, mean, variance, offset, scale, eps);
    const v = y.dataSync() as Float32Array;
    y.dispose();
    return v;
  };
  const theirs = run();
  const registration = register();
  let ours: Float32Array;
  try {
    ours = run();
  } finally {
    registration.unregister();
  }
  const plan = planFusedBatchNorm({ x, mean, variance, scale, offset }, { varianceEpsilon: eps });
  expect(plan, 'a call our kernel expresses').not.toBeNull();
  const L = plan!.period;
  const data = { x: x.dataSync(), mean: mean.dataSync(), variance: variance.dataSync(), scale: scale?.dataSync(), offset: offset?.dataSync() };
  const at = (v: ArrayLike<number> | undefined, i: number, d: number) => (v ? v[i % v.length]! : d);
  const tile = (v: ArrayLike<number> | undefined, d: number) => Float64Array.from({ length: L }, (_, j) => at(v, j, d));
  const exact = Float64Array.from(oracleForward(data.x, [plan!.size / L, L], {
    layout: 'NHWC', training: false, eps, runningMean: tile(data.mean, 0), runningVar: tile(data.variance, 1),
    weight: tile(data.scale, 1), bias: tile(data.offset, 0),
  }).y);
  const t = new Float64Array(exact.length);
  for (let i = 0; i < t.length; i++) t[i] = exact[i]! - at(data.offset, i, 0);
  tf.dispose([x, mean, variance, ...(scale ? [scale] : []), ...(offset ? [offset] : [])]);
  return { theirs, ours, stats: { ...registration.stats }, exact, t };
}

/**
 * Ours within OURS_BOUND of the oracle and within OURS_BOUND + theirsBound of tfjs's kernel,
 * value by value; `checkTheirs`: tfjs's kernel within theirsBound of the oracle too. Returns the
 * largest |ours − theirs| / bound seen (<= 1).
 */
export function expectKernelsAgree(
  r: KernelRun, theirsBound: (t: number, y: number) => number, what: string, checkTheirs = false,
): number {
  let worst = 0;
  for (let i = 0; i < r.ours.length; i++) {
    const t = r.t[i]!, y = r.exact[i]!, ours = r.ours[i]!, theirs = r.theirs[i]!;
    const tol = OURS_BOUND(t, y) + theirsBound(t, y);
    const err = Math.abs(ours - theirs);
    worst = Math.max(worst, err / tol);
    if (!(err <= tol)) throw new Error(`${what} index ${i}: ours ${ours} tfjs ${theirs} exact ${y} (tol ${tol})`);
    if (!(Math.abs(ours - y) <= OURS_BOUND(t, y))) throw new Error(`${what} index ${i}: ours ${ours} exact ${y} (tol ${OURS_BOUND(t, y)})`);
    if (checkTheirs && !(Math.abs(theirs - y) <= theirsBound(t, y))) {
      throw new Error(`${what} index ${i}: tfjs ${theirs} exact ${y} (tol ${theirsBound(t, y)}): the stated bound of tfjs's kernel does not hold`);
    }
  }
  expect(worst).toBeLessThanOrEqual(1);
  return worst;
}

/** A tiny model: dense(6) → BN → flatten → dense(2), on [N, 4, 4, 3] inputs (NHWC). */
export function nhwcModel(bn: tfl.layers.Layer | object): tfl.Sequential {
  return tfl.sequential({ layers: [
    tfl.layers.dense({ units: 6, inputShape: [4, 4, 3], kernelInitializer: 'glorotUniform' }),
    bn as tfl.layers.Layer, tfl.layers.flatten(), tfl.layers.dense({ units: 2 }),
  ] });
}

async function fitLosses(m: tfl.Sequential, xs: tfc.Tensor, ys: tfc.Tensor, epochs: number): Promise<number[]> {
  m.compile({ optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError' });
  return (await m.fit(xs, ys, { epochs, batchSize: 8, shuffle: false, verbose: 0 })).history.loss as number[];
}

/**
 * nhwcModel with our layer and with tfjs's own, identical initial weights, 8 epochs of 2 SGD steps:
 * the loss after `steps` steps within perStep·u·(steps + 1) relative of tfjs's, the final weights
 * within perStep·u·17·(|w| + 1e-3). Returns the largest loss difference in units of u·(steps + 1)·|loss|.
 */
export async function expectFitMatchesTfjs(engine: Engine, perStep: number): Promise<number> {
  useTfjs(tfAll, engine);
  const ours = nhwcModel(batchNormalization(engine, {}));
  const theirs = nhwcModel(tfl.layers.batchNormalization({}));
  theirs.setWeights(ours.getWeights());
  const xs = tf.tensor(randn(11, 16 * 48, 1.5, 0.3), [16, 4, 4, 3]);
  const ys = tf.tensor(randn(12, 32), [16, 2]);
  const a = await fitLosses(ours, xs, ys, 8), b = await fitLosses(theirs, xs, ys, 8);
  let worst = 0;
  for (let e = 0; e < a.length; e++) {
    const steps = 2 * (e + 1);
    const diff = Math.abs(a[e]! - b[e]!);
    worst = Math.max(worst, diff / (U32 * (steps + 1) * Math.abs(b[e]!)));
    expect(diff, `epoch ${e}: ours ${a[e]} tfjs ${b[e]}`).toBeLessThanOrEqual(perStep * U32 * (steps + 1) * Math.abs(b[e]!));
  }
  expect(a.at(-1)!).toBeLessThan(a[0]!);
  // getWeights() returns the layers' variables (tfjs types them as Tensor): named 'dense_1/kernel', ...
  const wa = ours.getWeights() as tfc.Variable[], wb = theirs.getWeights() as tfc.Variable[];
  expect(wa.map((w) => w.name.split('/').at(-1))).toEqual(wb.map((w) => w.name.split('/').at(-1)));
  for (let i = 0; i < wa.length; i++) {
    const va = wa[i]!.dataSync(), vb = wb[i]!.dataSync();
    for (let j = 0; j < va.length; j++) {
      expect(Math.abs(va[j]! - vb[j]!), `${wa[i]!.name}[${j}]`).toBeLessThanOrEqual(perStep * U32 * 17 * (Math.abs(vb[j]!) + 1e-3));
    }
  }
  tf.dispose([xs, ys]);
  ours.dispose();
  theirs.dispose();
  return worst;
}

/** The same comparison with our layer at epsilon 1e-5 against tfjs's default 1e-3: outside perStep's bound after one epoch. */
export async function expectEpsMismatchDetected(engine: Engine, perStep: number): Promise<void> {
  useTfjs(tfAll, engine);
  const ours = nhwcModel(batchNormalization(engine, { epsilon: 1e-5 }));
  const theirs = nhwcModel(tfl.layers.batchNormalization({}));
  theirs.setWeights(ours.getWeights());
  // Small activations (variance ~1e-3 after the first dense) make eps matter.
  const xs = tf.tensor(randn(21, 8 * 48, 0.05), [8, 4, 4, 3]), ys = tf.tensor(randn(22, 16), [8, 2]);
  const [a] = await fitLosses(ours, xs, ys, 1), [b] = await fitLosses(theirs, xs, ys, 1);
  expect(Math.abs(a! - b!)).toBeGreaterThan(perStep * U32 * 3 * Math.abs(b!));
  tf.dispose([xs, ys]);
  ours.dispose();
  theirs.dispose();
}
