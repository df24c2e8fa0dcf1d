// ONNX Runtime Web 1.30 (onnxruntime-web), wasm execution provider, 1 thread (no workers),
// running the one-node model of onnx-model.mjs.
import { ortContender } from './onnx-model.mjs';

export const id = 'ort-web';
export const label = 'ONNX Runtime Web (wasm)';

let ort = null;
async function getOrt() {
  if (ort) return ort;
  ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
  return ort;
}

export const setup = ortContender(getOrt, () => ({ executionProviders: ['wasm'], graphOptimizationLevel: 'all' }));
