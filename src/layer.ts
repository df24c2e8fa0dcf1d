import type { Engine } from './engine.js';
import { InvalidArgumentError, ShapeError, describe } from './errors.js';
import { checkLayout, geometry, type Layout } from './layout.js';
import { checkBoolean, checkEps, checkMomentum, isDetached, isFloat32Array, isObject } from './args.js';


export interface BatchNormOptions {
  eps?: number;
  /** Weight of the new batch (default 0.1); null: cumulative average, 1 / numBatchesTracked. */
  momentum?: number | null;
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
  readonly eps: number;
  readonly momentum: number | null;
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
    if (!isObject(options as unknown)) throw new InvalidArgumentError('options', 'an options object', describe(options));
    if (!Number.isInteger(numFeatures) || numFeatures < 1) {
      throw new InvalidArgumentError('numFeatures', 'a positive integer', describe(numFeatures));
    }
    const { momentum = 0.1 } = options;
    if (momentum !== null) checkMomentum(momentum, 'options.momentum');
    this.engine = engine;
    this.numFeatures = numFeatures;
    this.eps = checkEps(options.eps, 'options.eps');
    this.momentum = momentum;
    this.layout = checkLayout(options.layout, 'options.layout');
    const affine = checkBoolean(options.affine, 'options.affine', true);
    const track = checkBoolean(options.trackRunningStats, 'options.trackRunningStats', true);
    this.weight = affine ? new Float32Array(numFeatures).fill(1) : null;
    this.bias = affine ? new Float32Array(numFeatures) : null;
    this.runningMean = track ? new Float32Array(numFeatures) : null;
    this.runningVar = track ? new Float32Array(numFeatures).fill(1) : null;
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
    const g = geometry(shape, this.layout);
    if (g.channels !== this.numFeatures) {
      throw new ShapeError('shape', `${this.numFeatures} channels (numFeatures) on the channel axis`, `[${g.shape.join(', ')}]`);
    }
    const tracking = this.training && this.runningMean !== null;
    // PyTorch: num_batches_tracked += 1, then momentum None means factor 1 / num_batches_tracked.
    const momentum = this.momentum ?? 1 / (this.numBatchesTracked + 1);
    const saved = isFloat32Array(x) && !isDetached(x) ? x.slice() : x; // backward's x; forward validates it
    const { y, saveMean, saveInvStd } = this.engine.forward(x, shape, {
      layout: this.layout, training: this.training, weight: this.weight, bias: this.bias,
      runningMean: this.runningMean, runningVar: this.runningVar, momentum, eps: this.eps,
    });
    if (tracking) this.numBatchesTracked += 1;
    const usedBatchStats = this.training || this.runningMean === null;
    this.saved = { x: saved, shape: [...g.shape], training: usedBatchStats, saveMean, saveInvStd };
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
}
