export { createEngine, Engine, Tensor } from './engine.js';
export type { EngineOptions, EngineInfo, EngineFeatures, Build, WasmSource, WasmSources, WasmOrigin } from './engine.js';
export { BatchNorm } from './layer.js';
export type { ForwardOptions, ForwardResult, BackwardOptions, BackwardResult, Activation } from './ops/batchnorm.js';
export type { BatchNormOptions } from './layer.js';
export type { Layout } from './layout.js';
export { BatchNormError, InvalidArgumentError, ShapeError, MemoryError, ThreadError, DisposedError } from './errors.js';
export { oracleForward, oracleBackward, oracleMoments } from './oracle/batchnorm.js';
export type { OracleForwardOptions, OracleForwardResult, OracleBackwardOptions } from './oracle/batchnorm.js';
export { CONVENTIONS, functionalOptions } from './conventions.js';
export type { Convention, ConventionPreset, ConventionOptions } from './conventions.js';
export type {
  StateDict, StateDictFormat, PyTorchStateDict, KerasStateDict, StateDictOptions, LoadStateDictOptions, LoadStateDictResult,
} from './statedict.js';
export { foldedAffine, foldIntoConv, foldIntoLinear } from './fold.js';
export type { ConvWeightLayout, LinearWeightLayout, FoldableBatchNorm, FoldedAffine, FoldedWeights } from './fold.js';
export { mergeMoments, reduceMoments, mergeBackwardSums } from './ops/sync.js';
export type {
  Moments, MomentsLike, MomentsOptions, ForwardWithMomentsOptions, BackwardSums, BackwardReduceOptions, BackwardWithSumsOptions,
} from './ops/sync.js';
export { readSafetensors, SafetensorsError, MAX_HEADER_BYTES } from './safetensors.js';
export type { SafetensorsFile, SafetensorsDtype, SafetensorsArray } from './safetensors.js';
export { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward, LayerNorm, RMSNorm } from './layers/layernorm.js';
export type { LayerNormLayerOptions, RmsNormLayerOptions } from './layers/layernorm.js';
export type {
  LayerNormOptions, LayerNormResult, LayerNormBackwardOptions, LayerNormBackwardResult,
  RmsNormOptions, RmsNormResult, RmsNormBackwardOptions, RmsNormBackwardResult,
} from './ops/layernorm.js';
export { oracleLayerNorm, oracleLayerNormBackward, oracleRmsNorm, oracleRmsNormBackward } from './oracle/layernorm.js';
export type { OracleRowNormOptions, OracleRowNormBackwardOptions } from './oracle/layernorm.js';
export { groupNorm, groupNormBackward, instanceNorm, instanceNormBackward } from './layers/groupnorm.js';
export type {
  GroupActivation, GroupNormOptions, GroupNormBackwardOptions, InstanceNormOptions, InstanceNormBackwardOptions,
} from './ops/groupnorm.js';
export { oracleGroupNorm, oracleGroupNormBackward, oracleInstanceNorm, oracleInstanceNormBackward } from './oracle/groupnorm.js';
export type { OracleGroupNormOptions, OracleGroupNormResult, OracleGroupNormBackwardOptions, OracleInstanceNormOptions } from './oracle/groupnorm.js';
export { GroupNorm, InstanceNorm } from './layers/groupnorm.js';
export type { GroupNormLayerOptions, InstanceNormLayerOptions } from './layers/groupnorm.js';
