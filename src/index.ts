export { createEngine, Engine, Tensor } from './engine.js';
export type { EngineOptions, EngineInfo, Build } from './engine.js';
export { BatchNorm } from './layer.js';
export type { ForwardOptions, ForwardResult, BackwardOptions, BackwardResult } from './batchnorm.js';
export type { BatchNormOptions } from './layer.js';
export type { Layout } from './layout.js';
export { BatchNormError, InvalidArgumentError, ShapeError, MemoryError } from './errors.js';
export { oracleForward, oracleBackward, oracleMoments } from './oracle.js';
export type { OracleForwardOptions, OracleForwardResult, OracleBackwardOptions } from './oracle.js';
