// LayerNorm and RMSNorm for users: the functional entry points (engine first) and the layer
// classes with PyTorch's constructor arguments and state-dict names (torch.nn.LayerNorm,
// torch.nn.RMSNorm). The ops themselves are src/ops/layernorm.ts.
import type { Engine } from '../engine.js';
import { checkEngine, onEngine } from './entry.js';
import { InvalidArgumentError } from '../errors.js';
import { MAX_ELEMENTS } from '../layout.js';
import { checkBoolean, checkEps, checkF32, readOptions, readShape } from '../args.js';
import { fillWith } from '../typed.js';
import { backwardLayerNorm, backwardRmsNorm, checkDims, checkRows, forwardLayerNorm, forwardRmsNorm, product } from '../ops/layernorm.js';
import {
  loadStateDict, stateDict, type LoadStateDictOptions, type LoadStateDictResult, type StateDict, type StateDictOptions,
} from '../statedict.js';

/** LayerNorm over the trailing `normalizedShape` dims of x (PyTorch's layer_norm); `residual` normalizes x + residual and returns that sum. */
export const layerNorm = onEngine(forwardLayerNorm);

/** Gradients of layerNorm's y with respect to x, weight and bias. */
export const layerNormBackward = onEngine(backwardLayerNorm);

/** RMSNorm over the trailing `normalizedShape` dims of x (torch.nn.RMSNorm): y = x / sqrt(mean(x²) + eps) · weight. */
export const rmsNorm = onEngine(forwardRmsNorm);

/** Gradients of rmsNorm's y with respect to x and weight. */
export const rmsNormBackward = onEngine(backwardRmsNorm);

export interface LayerNormLayerOptions {
  /** Default 1e-5. */
  eps?: number;
  /** Learnable per-element weight (ones) and, with `bias`, bias (zeros); default true. */
  elementwiseAffine?: boolean;
  /** A learnable bias when elementwiseAffine; default true. */
  bias?: boolean;
}

export interface RmsNormLayerOptions {
  /** Default null: the float32 machine epsilon 2^-23 (PyTorch's eps=None). */
  eps?: number | null;
  /** Learnable per-element weight (ones); default true. */
  elementwiseAffine?: boolean;
}

/** What both layers share: the normalized shape, parameters, mode, the last forward's inputs, state dicts. */
abstract class RowNormLayer {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  training = true;
  gradWeight: Float32Array | null = null;
  gradBias: Float32Array | null = null;
  protected readonly engine: Engine;
  protected saved: { x: Float32Array; shape: readonly number[]; stats: Float32Array[] } | null = null;

  protected constructor(engine: unknown, normalizedShape: unknown, eps: number, weight: boolean, bias: boolean) {
    this.engine = checkEngine(engine);
    const dims = typeof normalizedShape === 'number' ? [normalizedShape] : readShape(normalizedShape, 'normalizedShape');
    this.normalizedShape = checkDims(dims, 'normalizedShape');
    const D = product(this.normalizedShape);
    if (D > MAX_ELEMENTS) throw new InvalidArgumentError('normalizedShape', `at most ${MAX_ELEMENTS} elements`, `${D} elements`);
    this.eps = eps;
    this.weight = weight ? fillWith(new Float32Array(D), 1) : null;
    this.bias = bias ? new Float32Array(D) : null;
  }

  train(mode = true): this {
    this.training = checkBoolean(mode, 'mode');
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** x checked against `shape` and a copy of it for backward() (taken before memory can grow under a resident x). */
  protected input(x: Float32Array, shape: readonly number[]): { xv: Float32Array; shape: readonly number[]; copy: Float32Array } {
    const rows = checkRows(readShape(shape), this.normalizedShape);
    const xv = checkF32(this.engine.arena, x, 'x', rows.g.size, () => `shape [${rows.shape.join(', ')}]`);
    return { xv, shape: rows.shape, copy: new Float32Array(xv) };
  }

  protected last(): { x: Float32Array; shape: readonly number[]; stats: Float32Array[] } {
    if (this.saved === null) throw new InvalidArgumentError('dy', 'a gradient for a preceding forward()', 'no forward() yet');
    return this.saved;
  }

  /** PyTorch's keys: weight (and bias) where the layer has them, plain arrays; `prefix` prepended. */
  stateDict(options: StateDictOptions = {}): StateDict {
    return stateDict(this.target(), options);
  }

  /** Loads weight (and bias); strict by default, and a failed load changes nothing (src/statedict.ts). */
  loadStateDict(dict: StateDict | Record<string, unknown>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    return loadStateDict(this.target(), dict, options);
  }

  /** The layer as statedict.ts sees it: parameters of normalizedShape's size, no running statistics. */
  private target() {
    return {
      numFeatures: this.weight?.length ?? 0, convention: 'pytorch' as const, weight: this.weight, bias: this.bias,
      runningMean: null, runningVar: null, numBatchesTracked: 0,
    };
  }
}

/** torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True). */
export class LayerNorm extends RowNormLayer {
  constructor(engine: Engine, normalizedShape: number | readonly number[], options: LayerNormLayerOptions = {}) {
    const o = readOptions(options, 'options', ['eps', 'elementwiseAffine', 'bias'] as const);
    const affine = checkBoolean(o.elementwiseAffine, 'options.elementwiseAffine', true);
    const bias = checkBoolean(o.bias, 'options.bias', true);
    super(engine, normalizedShape, checkEps(o.eps, 'options.eps'), affine, affine && bias);
  }

  /** y for x of `shape`, whose trailing dims are normalizedShape. */
  forward(x: Float32Array, shape: readonly number[]): Float32Array {
    const { xv, shape: dims, copy } = this.input(x, shape);
    const r = forwardLayerNorm(this.engine, xv, dims, { normalizedShape: this.normalizedShape, weight: this.weight, bias: this.bias, eps: this.eps });
    this.saved = { x: copy, shape: dims, stats: [r.saveMean, r.saveInvStd] };
    return r.y;
  }

  /** dx for the last forward(); leaves gradWeight and gradBias (null where the layer has none). */
  backward(dy: Float32Array): Float32Array {
    const { x, shape, stats: [saveMean, saveInvStd] } = this.last();
    const r = backwardLayerNorm(this.engine, dy, x, shape, { normalizedShape: this.normalizedShape, weight: this.weight, saveMean, saveInvStd });
    this.gradWeight = this.weight ? r.dweight : null;
    this.gradBias = this.bias ? r.dbias : null;
    return r.dx;
  }
}

/** torch.nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True). */
export class RMSNorm extends RowNormLayer {
  constructor(engine: Engine, normalizedShape: number | readonly number[], options: RmsNormLayerOptions = {}) {
    const o = readOptions(options, 'options', ['eps', 'elementwiseAffine'] as const);
    const affine = checkBoolean(o.elementwiseAffine, 'options.elementwiseAffine', true);
    super(engine, normalizedShape, o.eps === undefined || o.eps === null ? 2 ** -23 : checkEps(o.eps, 'options.eps'), affine, false);
  }

  forward(x: Float32Array, shape: readonly number[]): Float32Array {
    const { xv, shape: dims, copy } = this.input(x, shape);
    const r = forwardRmsNorm(this.engine, xv, dims, { normalizedShape: this.normalizedShape, weight: this.weight, eps: this.eps });
    this.saved = { x: copy, shape: dims, stats: [r.saveInvRms] };
    return r.y;
  }

  backward(dy: Float32Array): Float32Array {
    const { x, shape, stats: [saveInvRms] } = this.last();
    const r = backwardRmsNorm(this.engine, dy, x, shape, { normalizedShape: this.normalizedShape, weight: this.weight, saveInvRms });
    this.gradWeight = this.weight ? r.dweight : null;
    return r.dx;
  }
}
