// ONNX Runtime for Node 1.30 (onnxruntime-node), native CPU execution provider, 1 thread.
// Its install script (which would download CUDA binaries) never runs: bench/package.json's
// allowScripts has "onnxruntime-node": false, and bench/deps.mjs installs with
// ONNXRUNTIME_NODE_INSTALL=skip; the CPU binaries ship in the package (bin/napi-v6/<os>/<arch>/).
import { ortContender } from './onnx-model.mjs';

export const id = 'ort-node';
export const label = 'ONNX Runtime Node (native CPU)';

let ort = null;
async function getOrt() {
  if (ort) return ort;
  ort = (await import('onnxruntime-node')).default;
  ort.env.logLevel = 'error';
  return ort;
}

export const setup = ortContender(getOrt, () => ({
  executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
}));
