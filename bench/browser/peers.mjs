// Entry of the browser bench's peer bundle: bench/browser/server.mjs bundles it with esbuild from
// bench/node_modules into <out>/peers.js (served as /peers/peers.js). It holds the npm packages a
// browser cannot import by URL (bare specifiers; onnx-proto's CommonJS protobufjs) and the Node
// bench's own ORT contender (contenders/ort-web.mjs, which builds the one-node model with
// onnx-proto). bench/data.mjs and bench/package-under-test.mjs stay outside the bundle (imported
// by URL: the worker's instances), and onnxruntime-web is its own ESM build, imported by URL so
// that it finds its wasm next to itself.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

export * as ortWeb from '../contenders/ort-web.mjs';

/** tfjs with its wasm backend, single-threaded SIMD build (as contenders/tfjs-wasm.mjs in Node), binaries from `wasmDir`. */
export function tfjsWasm(wasmDir) {
  ready ??= (async () => {
    setWasmPaths(wasmDir);
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend failed to initialise');
    await tf.ready();
    return tf;
  })();
  return ready;
}
let ready = null;
