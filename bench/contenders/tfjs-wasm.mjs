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
import { tfjsContender } from './tfjs-calls.mjs';

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

export const setup = tfjsContender(async () => { await init(); return tf; });
