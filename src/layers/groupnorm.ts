// GroupNorm and InstanceNorm layers with PyTorch's constructor arguments and state-dict names
// (torch.nn.GroupNorm(num_groups, num_channels, eps, affine); torch.nn.InstanceNorm{1,2,3}d(
// num_features, eps, momentum, affine, track_running_stats)), the BatchNorm layer's methods.
//   GroupNorm state:    weight, bias (affine)
//   InstanceNorm state: weight, bias (affine); running_mean, running_var, num_batches_tracked (tracked)
// InstanceNorm, as PyTorch's _InstanceNorm.forward: useInputStats = training || !trackRunningStats,
// momentum null means 0 (no update), and num_batches_tracked is kept but never incremented.
import type { Engine } from '../engine.js';
import { checkEngine, onEngine } from './entry.js';
import { InvalidArgumentError, ShapeError, describe } from '../errors.js';
import { MAX_ELEMENTS, checkLayout, geometry, type Layout } from '../layout.js';
import { checkBoolean, checkEps, checkF32, checkMomentum, readOptions, readShape } from '../args.js';
import { fillWith } from '../typed.js';
import {
  groupNorm as groupNormOp, groupNormBackward as groupNormBackwardOp, instanceNorm as instanceNormOp,
  instanceNormBackward as instanceNormBackwardOp, type GroupActivation,
} from '../ops/groupnorm.js';
import {
  loadStateDict, stateDict, type LoadStateDictOptions, type LoadStateDictResult, type StateDict, type StateDictOptions,
  type StateDictTarget,
} from '../statedict.js';

/** GroupNorm (F.group_norm): statistics per (sample, group of C / groups channels), per-channel affine, optional fused SiLU. */
export const groupNorm = onEngine(groupNormOp);

/** Gradients of groupNorm's y with respect to x, weight and bias. */
export const groupNormBackward = onEngine(groupNormBackwardOp);

/** InstanceNorm (F.instance_norm): statistics per (sample, channel), optional affine and running statistics. */
export const instanceNorm = onEngine(instanceNormOp);

/** Gradients of instanceNorm's y with respect to x, weight and bias. */
export const instanceNormBackward = onEngine(instanceNormBackwardOp);

export interface GroupNormLayerOptions {
  /** Default 1e-5. */
  eps?: number;
  /** Learnable per-channel weight (ones) and bias (zeros); default true. */
  affine?: boolean;
  layout?: Layout;
  /** 'silu' fuses y = z·σ(z) (GroupNorm + SiLU); default 'none'. */
  activation?: GroupActivation;
}

export interface InstanceNormLayerOptions {
  eps?: number;
  /** Weight of the new batch (default 0.1); null: no update (PyTorch passes 0.0). */
  momentum?: number | null;
  /** Default false (PyTorch's InstanceNorm default). */
  affine?: boolean;
  /** Default false. */
  trackRunningStats?: boolean;
  layout?: Layout;
}

function checkCount(value: unknown, name: string): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_ELEMENTS) {
    throw new InvalidArgumentError(name, `an integer in [1, ${MAX_ELEMENTS}]`, describe(value));
  }
  return value as number;
}

interface Saved { x: Float32Array; shape: number[]; saveMean: Float32Array; saveInvStd: Float32Array; useInputStats: boolean }

/** What both layers share: the engine, the affine parameters, the mode, the last forward's state. */
abstract class NormLayer {
  readonly eps: number;
  readonly layout: Layout;
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  training = true;
  gradWeight: Float32Array | null = null;
  gradBias: Float32Array | null = null;
  protected readonly engine: Engine;
  protected saved: Saved | null = null;

  constructor(engine: unknown, channels: number, eps: unknown, affine: unknown, layout: unknown, affineDefault: boolean) {
    this.engine = checkEngine(engine);
    this.eps = checkEps(eps, 'options.eps');
    this.layout = checkLayout(layout, 'options.layout');
    const withAffine = checkBoolean(affine, 'options.affine', affineDefault);
    this.weight = withAffine ? fillWith(new Float32Array(channels), 1) : null;
    this.bias = withAffine ? new Float32Array(channels) : null;
  }

  train(mode = true): this {
    this.training = checkBoolean(mode, 'mode');
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** The shape read once and checked against the layer's channels; x checked; a copy of x kept for backward. */
  protected input(x: Float32Array, shape: readonly number[], channels: number, what: string): { x: Float32Array; shape: number[]; copy: Float32Array } {
    const g = geometry(readShape(shape), this.layout);
    if (g.channels !== channels) throw new ShapeError('shape', `${channels} channels (${what}) on the channel axis`, `[${g.shape.join(', ')}]`);
    const xv = checkF32(this.engine.arena, x, 'x', g.size, () => `shape [${g.shape.join(', ')}]`);
    return { x: xv, shape: g.shape.slice(), copy: new Float32Array(xv) };
  }

  protected last(): Saved {
    if (this.saved === null) throw new InvalidArgumentError('dy', 'a gradient for a preceding forward()', 'no forward() yet');
    return this.saved;
  }

  protected grads(r: { dx: Float32Array; dweight: Float32Array; dbias: Float32Array }): Float32Array {
    this.gradWeight = this.weight ? r.dweight : null;
    this.gradBias = this.bias ? r.dbias : null;
    return r.dx;
  }

  /** The state-dict view of this layer (src/statedict.ts). */
  protected abstract target(): StateDictTarget;

  /** Parameters and buffers as plain arrays, PyTorch's names (see statedict.ts). */
  stateDict(options: StateDictOptions = {}): StateDict {
    return stateDict(this.target(), options);
  }

  /** Loads a state dict; strict by default; a failed load changes nothing. */
  loadStateDict(dict: StateDict | Record<string, unknown>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    return loadStateDict(this.target(), dict, options);
  }
}

/** PyTorch-like GroupNorm over any rank >= 2: statistics per (n, group), per-channel affine. */
export class GroupNorm extends NormLayer {
  readonly numGroups: number;
  readonly numChannels: number;
  readonly activation: GroupActivation;

  constructor(engine: Engine, numGroups: number, numChannels: number, options: GroupNormLayerOptions = {}) {
    const o = readOptions(options, 'options', ['eps', 'affine', 'layout', 'activation'] as const);
    const C = checkCount(numChannels, 'numChannels');
    super(engine, C, o.eps, o.affine, o.layout, true);
    this.numGroups = checkCount(numGroups, 'numGroups');
    if (C % this.numGroups !== 0) throw new InvalidArgumentError('numGroups', `a divisor of numChannels = ${C}`, String(numGroups));
    if (o.activation !== undefined && o.activation !== 'none' && o.activation !== 'silu') {
      throw new InvalidArgumentError('options.activation', `'none' or 'silu'`, describe(o.activation));
    }
    this.numChannels = C;
    this.activation = o.activation ?? 'none';
  }

  /** y for x of `shape` (the same in training and eval: GroupNorm has no running statistics). */
  forward(x: Float32Array, shape: readonly number[]): Float32Array {
    const a = this.input(x, shape, this.numChannels, 'numChannels');
    const { y, saveMean, saveInvStd } = groupNorm(this.engine, a.x, a.shape, {
      groups: this.numGroups, layout: this.layout, weight: this.weight, bias: this.bias, eps: this.eps, activation: this.activation,
    });
    this.saved = { x: a.copy, shape: a.shape, saveMean, saveInvStd, useInputStats: true };
    return y;
  }

  /** dx for the last forward(); leaves gradWeight and gradBias (null without affine). */
  backward(dy: Float32Array): Float32Array {
    const { x, shape, saveMean, saveInvStd } = this.last();
    return this.grads(groupNormBackward(this.engine, dy, x, shape, {
      groups: this.numGroups, layout: this.layout, weight: this.weight, bias: this.bias, saveMean, saveInvStd, activation: this.activation,
    }));
  }

  protected target(): StateDictTarget {
    return { numFeatures: this.numChannels, convention: 'pytorch', weight: this.weight, bias: this.bias, runningMean: null, runningVar: null, numBatchesTracked: 0 };
  }
}

/** PyTorch-like InstanceNorm{1,2,3}d: statistics per (n, c), optional affine and running statistics. */
export class InstanceNorm extends NormLayer implements StateDictTarget {
  readonly numFeatures: number;
  readonly convention = 'pytorch' as const;
  readonly momentum: number | null;
  readonly runningMean: Float32Array | null;
  readonly runningVar: Float32Array | null;
  numBatchesTracked = 0;

  constructor(engine: Engine, numFeatures: number, options: InstanceNormLayerOptions = {}) {
    const o = readOptions(options, 'options', ['eps', 'momentum', 'affine', 'trackRunningStats', 'layout'] as const);
    const C = checkCount(numFeatures, 'numFeatures');
    super(engine, C, o.eps, o.affine, o.layout, false);
    this.numFeatures = C;
    this.momentum = o.momentum === null ? null : checkMomentum(o.momentum, 'options.momentum');
    const track = checkBoolean(o.trackRunningStats, 'options.trackRunningStats', false);
    this.runningMean = track ? new Float32Array(C) : null;
    this.runningVar = track ? fillWith(new Float32Array(C), 1) : null;
  }

  /** y for x of `shape`: the instance's statistics unless in eval with running statistics. */
  forward(x: Float32Array, shape: readonly number[]): Float32Array {
    const a = this.input(x, shape, this.numFeatures, 'numFeatures');
    const useInputStats = this.training || this.runningMean === null;
    const { y, saveMean, saveInvStd } = instanceNorm(this.engine, a.x, a.shape, {
      layout: this.layout, weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar,
      useInputStats, momentum: this.momentum ?? 0, eps: this.eps,
    });
    this.saved = { x: a.copy, shape: a.shape, saveMean, saveInvStd, useInputStats };
    return y;
  }

  backward(dy: Float32Array): Float32Array {
    const { x, shape, saveMean, saveInvStd, useInputStats } = this.last();
    return this.grads(instanceNormBackward(this.engine, dy, x, shape, {
      layout: this.layout, weight: this.weight, saveMean, saveInvStd, useInputStats,
    }));
  }

  protected target(): StateDictTarget {
    return this;
  }
}
