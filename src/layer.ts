import { Engine } from './engine.js';
import { fillWith } from './typed.js';
import { InvalidArgumentError, ShapeError, describe } from './errors.js';
import { MAX_ELEMENTS, checkLayout, geometry, type Layout } from './layout.js';
import { checkBoolean, checkEps, checkF32, readOptions, readShape } from './args.js';
import { forwardBatchNorm } from './ops/batchnorm.js';
import { CONVENTIONS, batchWeight, checkConvention, checkConventionMomentum, type Convention } from './conventions.js';
import {
  loadStateDict, stateDict, type LoadStateDictOptions, type LoadStateDictResult, type StateDict, type StateDictOptions,
} from './statedict.js';
import { foldedAffine, type FoldedAffine } from './fold.js';


const LAYER_KEYS = ['convention', 'eps', 'momentum', 'unbiasedRunningVar', 'affine', 'trackRunningStats', 'layout'] as const;

export interface BatchNormOptions {
  /**
   * Framework whose habits the layer follows (default 'pytorch'): the meaning and default of
   * `momentum`, what the running variance stores, and the default eps (see conventions.ts).
   *   'pytorch': momentum weights the new batch (0.1), unbiased running var, eps 1e-5
   *   'onnx':    momentum weights the old value (0.9), biased running var,   eps 1e-5
   *   'keras':   momentum weights the old value (0.99), biased running var,  eps 1e-3
   */
  convention?: Convention;
  /** Default: the convention's (1e-5, 1e-5, 1e-3). */
  eps?: number;
  /**
   * In the convention's meaning (PyTorch: weight of the new batch; ONNX/Keras: weight of the old
   * running value); default the convention's (0.1, 0.9, 0.99). null: cumulative average, 1 / numBatchesTracked.
   */
  momentum?: number | null;
  /** The running variance stores the unbiased (n − 1) batch variance; default: the convention's. */
  unbiasedRunningVar?: boolean;
  /** Learnable weight (ones) and bias (zeros); default true. */
  affine?: boolean;
  /** Keep running statistics (default true); without them eval uses batch statistics. */
  trackRunningStats?: boolean;
  layout?: Layout;
}

/**
 * PyTorch-like BatchNorm{1,2,3}d over any rank >= 2. State: weight, bias, runningMean,
 * runningVar, numBatchesTracked, training. forward() remembers what backward() needs.
 */
export class BatchNorm {
  readonly numFeatures: number;
  readonly convention: Convention;
  readonly eps: number;
  /** In the convention's meaning (ONNX/Keras: weight of the old running value); null: cumulative average. */
  readonly momentum: number | null;
  readonly unbiasedRunningVar: boolean;
  readonly layout: Layout;
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  readonly runningMean: Float32Array | null;
  readonly runningVar: Float32Array | null;
  numBatchesTracked = 0;
  training = true;
  gradWeight: Float32Array | null = null;
  gradBias: Float32Array | null = null;
  private readonly engine: Engine;
  private saved: { x: Float32Array; shape: number[]; training: boolean; saveMean: Float32Array; saveInvStd: Float32Array } | null = null;

  constructor(engine: Engine, numFeatures: number, options: BatchNormOptions = {}) {
    const o = readOptions(options, 'options', LAYER_KEYS);
    if (!(engine instanceof Engine)) throw new InvalidArgumentError('engine', 'an Engine from createEngine()', describe(engine));
    if (!Number.isInteger(numFeatures) || numFeatures < 1 || numFeatures > MAX_ELEMENTS) {
      throw new InvalidArgumentError('numFeatures', `an integer in [1, ${MAX_ELEMENTS}]`, describe(numFeatures));
    }
    const convention = checkConvention(o.convention, 'options.convention');
    const preset = CONVENTIONS[convention];
    this.engine = engine;
    this.numFeatures = numFeatures;
    this.convention = convention;
    this.momentum = checkConventionMomentum(o.momentum, convention, 'options.momentum');
    this.eps = o.eps === undefined ? preset.eps : checkEps(o.eps, 'options.eps');
    this.unbiasedRunningVar = checkBoolean(o.unbiasedRunningVar, 'options.unbiasedRunningVar', preset.unbiasedRunningVar);
    this.layout = checkLayout(o.layout, 'options.layout');
    const affine = checkBoolean(o.affine, 'options.affine', true);
    const track = checkBoolean(o.trackRunningStats, 'options.trackRunningStats', true);
    this.weight = affine ? fillWith(new Float32Array(numFeatures), 1) : null;
    this.bias = affine ? new Float32Array(numFeatures) : null;
    this.runningMean = track ? new Float32Array(numFeatures) : null;
    this.runningVar = track ? fillWith(new Float32Array(numFeatures), 1) : null;
  }

  train(mode = true): this {
    this.training = checkBoolean(mode, 'mode');
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** y for x of `shape` (channel axis per the layer's layout; C must equal numFeatures). */
  forward(x: Float32Array, shape: readonly number[]): Float32Array {
    // The shape is read once; the engine gets this checked copy and an engine-made view of x.
    const g = geometry(readShape(shape), this.layout);
    if (g.channels !== this.numFeatures) {
      throw new ShapeError('shape', `${this.numFeatures} channels (numFeatures) on the channel axis`, `[${g.shape.join(', ')}]`);
    }
    const xv = checkF32(this.engine.arena, x, 'x', g.size, () => `shape [${g.shape.join(', ')}]`);
    const tracking = this.training && this.runningMean !== null;
    if (tracking && !(this.numBatchesTracked < Number.MAX_SAFE_INTEGER)) {
      // The counter must stay a safe integer: stateDict() would write one loadStateDict() refuses.
      throw new InvalidArgumentError('layer.numBatchesTracked', 'below 2^53 − 1 (Number.MAX_SAFE_INTEGER) to count another batch', String(this.numBatchesTracked));
    }
    // The functional primitive: weight of the new batch (ONNX/Keras: 1 − momentum). PyTorch:
    // num_batches_tracked += 1, then momentum None means factor 1 / num_batches_tracked.
    const momentum = batchWeight(this.convention, this.momentum, this.numBatchesTracked);
    const saved = new Float32Array(xv); // backward's x, copied before memory can grow under a resident x
    const { y, saveMean, saveInvStd } = forwardBatchNorm(this.engine, xv, g.shape, {
      layout: this.layout, training: this.training, weight: this.weight, bias: this.bias,
      runningMean: this.runningMean, runningVar: this.runningVar, momentum,
      unbiasedRunningVar: this.unbiasedRunningVar, eps: this.eps,
    });
    if (tracking) this.numBatchesTracked += 1;
    const usedBatchStats = this.training || this.runningMean === null;
    this.saved = { x: saved, shape: g.shape.slice(), training: usedBatchStats, saveMean, saveInvStd };
    return y;
  }

  /** dx for the last forward(); leaves gradWeight and gradBias (null without affine). */
  backward(dy: Float32Array): Float32Array {
    if (this.saved === null) throw new InvalidArgumentError('dy', 'a gradient for a preceding forward()', 'no forward() yet');
    const { x, shape, training, saveMean, saveInvStd } = this.saved;
    const { dx, dweight, dbias } = this.engine.backward(dy, x, shape, {
      layout: this.layout, training, weight: this.weight, saveMean, saveInvStd,
    });
    this.gradWeight = this.weight ? dweight : null;
    this.gradBias = this.bias ? dbias : null;
    return dx;
  }

  /**
   * Parameters and buffers as a plain JSON-serializable object: PyTorch names (weight, bias,
   * running_mean, running_var, num_batches_tracked) or Keras names (gamma, beta, moving_mean,
   * moving_variance); default Keras for the keras convention, else PyTorch. See statedict.ts.
   */
  stateDict(options: StateDictOptions = {}): StateDict {
    return stateDict(this, options);
  }

  /**
   * Loads a state dict (PyTorch or Keras names, detected unless `options.format` says). Strict by
   * default: a missing or extra key is an InvalidArgumentError naming them; a length other than
   * numFeatures a ShapeError naming the key. A failed load changes nothing.
   */
  loadStateDict(dict: StateDict | Record<string, unknown>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    return loadStateDict(this, dict, options);
  }

  /**
   * The inference map as y = x · scale[c] + shift[c]: scale = γ / sqrt(runningVar + eps),
   * shift = β − runningMean · scale (float64, rounded once). Needs running statistics.
   */
  foldedAffine(): FoldedAffine {
    if (this.runningMean === null) {
      throw new InvalidArgumentError('layer.runningMean', 'running statistics (a layer with trackRunningStats: true)', 'null');
    }
    return foldedAffine(this);
  }
}
