// TensorFlow.js 4.22 with @tensorflow/tfjs-backend-wasm (SIMD, single-threaded build).
//
// What is timed: x (and dy) are tf.Tensors created once, already in tfjs's wasm heap (like our
// zero-copy path); each call runs the ops, reads every output back with dataSync() (a copy out
// of the wasm heap, as a user must do to get numbers) and disposes them.
//   inference  tf.batchNorm(x, runningMean, runningVar, beta, gamma, eps)
//   training   tf.moments(x, axes) + tf.batchNorm(...)   (no running-stat update: C values)
//   backward   tf.grads(training forward)([x, gamma, beta], dy): tfjs has no separate backward,
//              so its time includes re-running the training forward (the tape).
//
// NCHW: tfjs's batchNorm kernels (wasm, and cpu too) index the parameters by the flat index
// modulo their length, i.e. they broadcast over the LAST axis only. On NCHW with C-length or
// [C,1,1]-shaped parameters the result is wrong (setup() checks that once per case and reports
// it in `notes`), and with 1×1 spatial (where the forward happens to be right) tf.grads of it
// throws. The correct NCHW usage timed here is the plain broadcasting arithmetic
// (x − mean)·(gamma·rsqrt(var + eps)) + beta with [1,C,1,...]-shaped statistics and parameters
// (tf.sub/mul/add broadcast correctly). NHWC and [N, C] use tf.batchNorm (channel axis last).
import { register } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { EPS, geometryOf } from '../data.mjs';

/** The naive-usage check of the backward costs a full tfjs gradient: only on small cases. */
const NAIVE_BACKWARD_MAX = 2_000_000;

export const id = 'tfjs-wasm';
export const label = 'TensorFlow.js wasm';

let ready = null;
async function init() {
  ready ??= (async () => {
    // Gradients for tf.grads: tfjs-core's Node entry has none registered (see the hook's header).
    register('./tfjs-gradients-hook.mjs', import.meta.url);
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false); // single thread: the plain SIMD build
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend failed to initialise');
    await tf.ready();
  })();
  return ready;
}

export async function setup({ c, op, inputs, compareNaive }) {
  await init();
  const { C } = geometryOf(c);
  const rank = c.shape.length;
  const channelAxis = c.layout === 'NHWC' ? rank - 1 : 1;
  const axes = [...Array(rank).keys()].filter((a) => a !== channelAxis);
  // tf.batchNorm where the channel axis is the last one; broadcasting arithmetic otherwise
  // (on NCHW with 1x1 spatial, tf.batchNorm's forward is right but tf.grads of it throws).
  const lastAxis = channelAxis === rank - 1;
  const pShape = lastAxis ? [C] : Array.from({ length: rank }, (_, a) => (a === 1 ? C : 1));
  const param = (v) => tf.tensor(v, pShape);

  const x = tf.tensor(inputs.x, c.shape);
  const dy = op === 'backward' ? tf.tensor(inputs.dy, c.shape) : null;
  const gamma = param(inputs.weight), beta = param(inputs.bias);
  const rm = param(inputs.runningMean), rv = param(inputs.runningVar);
  const held = [x, gamma, beta, rm, rv, ...(dy ? [dy] : [])];

  const normalize = lastAxis
    ? (t, mean, variance, g, b) => tf.batchNorm(t, mean, variance, b, g, EPS)
    : (t, mean, variance, g, b) => tf.add(tf.mul(tf.sub(t, mean), tf.mul(g, tf.rsqrt(tf.add(variance, EPS)))), b);
  const trainForward = (t, g, b) => {
    const { mean, variance } = tf.moments(t, axes, !lastAxis);
    return { y: normalize(t, mean, variance, g, b), mean, variance };
  };
  const flat = (t) => t.dataSync();
  const invStdOf = (variance) => Float32Array.from(variance, (v) => 1 / Math.sqrt(v + EPS));

  let last = null;
  let run;
  if (op === 'inference') {
    run = () => {
      const y = tf.tidy(() => normalize(x, rm, rv, gamma, beta));
      last = { main: flat(y) };
      y.dispose();
    };
  } else if (op === 'training') {
    run = () => {
      const r = tf.tidy(() => trainForward(x, gamma, beta));
      last = { main: flat(r.y), mean: flat(r.mean), invStd: invStdOf(flat(r.variance)) };
      tf.dispose([r.y, r.mean, r.variance]);
    };
  } else {
    const gradFn = tf.grads((t, g, b) => trainForward(t, g, b).y);
    run = () => {
      const [dx, dg, db] = gradFn([x, gamma, beta], dy);
      last = { main: flat(dx), dweight: flat(dg), dbias: flat(db) };
      tf.dispose([dx, dg, db]);
    };
  }

  // What a user gets from the obvious call on NCHW: tf.batchNorm with [C,1,1]-shaped parameters
  // (NumPy broadcasting says that is right; tfjs's kernels broadcast over the last axis).
  const notes = [];
  if (!lastAxis && (op !== 'backward' || c.size <= NAIVE_BACKWARD_MAX)) {
    const p3 = (t) => tf.reshape(t, [C, ...Array(rank - 2).fill(1)]);
    const naiveForward = (t, g, b) => {
      const { mean, variance } = tf.moments(t, axes);
      return tf.batchNorm(t, p3(mean), p3(variance), p3(b), p3(g), EPS);
    };
    let note;
    try {
      let out;
      if (op === 'backward') {
        out = tf.tidy(() => {
          const [dx, dg, db] = tf.grads(naiveForward)([x, tf.reshape(gamma, [C]), tf.reshape(beta, [C])], dy);
          return { main: dx.dataSync(), dweight: dg.dataSync(), dbias: db.dataSync() };
        });
      } else {
        const y = tf.tidy(() => (op === 'inference'
          ? tf.batchNorm(x, p3(rm), p3(rv), p3(beta), p3(gamma), EPS)
          : naiveForward(x, tf.reshape(gamma, [C]), tf.reshape(beta, [C]))));
        out = { main: y.dataSync() };
        y.dispose();
      }
      const r = compareNaive(out);
      note = `${r.correct ? 'correct' : 'WRONG'} (rel. err ${r.err.toExponential(1)})`;
    } catch (error) {
      note = `throws "${String(error?.message ?? error).split('\n')[0]}"`;
    }
    notes.push(`naive ${op === 'backward' ? 'tf.grads of ' : ''}tf.batchNorm with [C,1,1] parameters: ${note}; timed: broadcasting arithmetic`);
  }

  return {
    run,
    output: () => last,
    teardown() { tf.dispose(held); },
    notes,
    info: { formulation: lastAxis ? 'tf.batchNorm' : 'broadcast arithmetic' },
  };
}
