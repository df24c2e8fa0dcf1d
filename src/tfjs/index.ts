// wasm-batchnorm/tfjs: the TensorFlow.js adapter. Nothing here imports @tensorflow/*: the caller
// passes their tfjs namespace (registerTfjsKernels(tf, ...), useTfjs(tf, ...)).
export { registerTfjsKernels, planFusedBatchNorm, FUSED_BATCH_NORM, TFJS_BACKENDS } from './kernels.js';
export type { RegisterTfjsKernelsOptions, TfjsKernelRegistration, TfjsBackendName } from './kernels.js';
export { useTfjs, batchNormalization, LAYER_CLASS_NAME } from './layer.js';
export type { TfjsBatchNormalization, TfjsBatchNormalizationConfig, TfSerializableIdentifier } from './layer.js';
export type {
  TfjsKernelRegistry, TfjsLayersNamespace, TfKernelArgs, TfKernelConfig, TfTensorInfo, TfTensor, TfLayerVariable, TfLayerBase,
  TfLayerClass, TfSerializable,
} from './types.js';
