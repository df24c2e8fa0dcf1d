// A tfjs-layers BatchNormalization whose forward and gradient are ours (tf.customGrad).
//
// Keras semantics and names (tfjs-layers' own BatchNormalization): weights gamma, beta,
// moving_mean, moving_variance of shape [C], C = inputShape[axis]; in training the batch
// statistics normalize and moving = moving · momentum + batch · (1 − momentum), with the biased
// batch variance (functionalOptions('keras', ...)); in inference the moving statistics normalize.
// Any single axis works: x of shape [..., C, ...] is [outer, C, inner] with outer the product of
// the dimensions before the axis and inner of those after it, our NCHW layout ([outer, C] NHWC
// when the axis is the last one). tfjs's own layer is wrong for axis 1 on rank > 2 (its
// FusedBatchNorm broadcasts parameters over the last axis only, see kernels.ts).
//
// tfjs is not imported: useTfjs(tf, engine) receives the namespace, builds the class on its
// tf.layers.Layer and registers it for deserialization (tf.loadLayersModel builds layers from
// their config alone, so `engine` is the one deserialized layers run on).
import type { Engine } from '../engine.js';
import { Engine as EngineClass } from '../engine.js';
import { InvalidArgumentError, ShapeError, describe } from '../errors.js';
import { functionalOptions } from '../conventions.js';
import type {
  TfLayerBase, TfLayerVariable, TfSerializable, TfTensor, TfjsLayersNamespace,
} from './types.js';

/** The class name the layer is registered (and saved) under. */
export const LAYER_CLASS_NAME = 'WasmBatchNormalization';

/** An initializer, regularizer or constraint: its name ('ones', 'glorotUniform', 'l1l2'), a serialized `{ className, config }`, or an instance. */
export type TfSerializableIdentifier = string | { className: string; config?: Record<string, unknown> } | TfSerializable;

/** Keras BatchNormalization's arguments (tfjs-layers' BatchNormalizationLayerArgs). */
export interface TfjsBatchNormalizationConfig {
  /** The channel axis (default −1, channels-last; 1 for NCHW); one axis, negative counts from the end. */
  axis?: number;
  /** Weight of the old moving value, in [0, 1] (default 0.99). */
  momentum?: number;
  /** Added to the variance (default 1e-3). */
  epsilon?: number;
  /** Add the learned offset beta (default true). */
  center?: boolean;
  /** Multiply by the learned gamma (default true). */
  scale?: boolean;
  betaInitializer?: TfSerializableIdentifier;
  gammaInitializer?: TfSerializableIdentifier;
  movingMeanInitializer?: TfSerializableIdentifier;
  movingVarianceInitializer?: TfSerializableIdentifier;
  betaRegularizer?: TfSerializableIdentifier | null;
  gammaRegularizer?: TfSerializableIdentifier | null;
  betaConstraint?: TfSerializableIdentifier | null;
  gammaConstraint?: TfSerializableIdentifier | null;
  /** tfjs-layers' LayerArgs: name, inputShape, batchInputShape, batchSize, trainable, dtype, weights, ... */
  name?: string;
  inputShape?: (number | null)[];
  batchInputShape?: (number | null)[];
  batchSize?: number;
  trainable?: boolean;
  [layerArg: string]: unknown;
}

const OWN_KEYS = [
  'axis', 'momentum', 'epsilon', 'center', 'scale', 'betaInitializer', 'gammaInitializer', 'movingMeanInitializer',
  'movingVarianceInitializer', 'betaRegularizer', 'gammaRegularizer', 'betaConstraint', 'gammaConstraint',
] as const;

/** The layer object (a tf.layers.Layer); see TfjsBatchNormalizationConfig for the fields. */
export interface TfjsBatchNormalization {
  readonly axis: number;
  readonly momentum: number;
  readonly epsilon: number;
  readonly center: boolean;
  readonly scale: boolean;
  /** The engine it runs on. */
  readonly engine: Engine;
  getClassName(): string;
  getConfig(): Record<string, unknown>;
}

interface Bound {
  tf: TfjsLayersNamespace;
  engine: Engine;
  cls: new (config: TfjsBatchNormalizationConfig, engine?: Engine) => TfjsBatchNormalization;
}
let bound: Bound | null = null;
/** One class per tfjs namespace (registerClass keys by class name, last registration wins). */
const classes = new WeakMap<object, Bound['cls']>();

const PASCAL_EXCEPTIONS: Record<string, string> = { l1l2: 'L1L2', l1: 'L1L2', l2: 'L1L2' };

/** An identifier to the registered tfjs object it names (tfjs-layers' getInitializer & co., via tf.serialization). */
function deserialize(tf: TfjsLayersNamespace, id: unknown, argument: string): TfSerializable | null {
  if (id === undefined || id === null) return null;
  if (typeof id === 'object' && typeof (id as TfSerializable).getClassName === 'function') return id as TfSerializable;
  let className: string, config: Record<string, unknown> = {};
  if (typeof id === 'string') {
    const camel = id.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    className = PASCAL_EXCEPTIONS[camel] ?? camel.charAt(0).toUpperCase() + camel.slice(1);
    if (camel === 'l1') config = { l1: 0.01 };
    if (camel === 'l2') config = { l2: 0.01 };
  } else if (typeof id === 'object' && typeof (id as { className?: unknown }).className === 'string') {
    className = (id as { className: string }).className;
    config = ((id as { config?: Record<string, unknown> }).config) ?? {};
  } else {
    throw new InvalidArgumentError(argument, 'a name, a { className, config } object or a tfjs initializer/regularizer/constraint', describe(id));
  }
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (!entry) throw new InvalidArgumentError(argument, 'a class registered with tf.serialization (tfjs-layers imported?)', JSON.stringify(className));
  const [cls, fromConfig] = entry as [unknown, (cls: unknown, config: Record<string, unknown>) => TfSerializable];
  return fromConfig(cls, config);
}

const serialize = (o: TfSerializable | null) => (o === null ? null : { className: o.getClassName(), config: o.getConfig() });

function checkNumber(value: unknown, name: string, fallback: number, ok: (v: number) => boolean, expected: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !ok(value)) throw new InvalidArgumentError(name, expected, describe(value));
  return value;
}
function checkFlag(value: unknown, name: string): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(name, 'a boolean', describe(value));
  return value;
}

function makeClass(tf: TfjsLayersNamespace): Bound['cls'] {
  type Base = TfLayerBase & { getConfig(): Record<string, unknown> };
  const Layer = tf.layers.Layer as unknown as new (config: object) => Base;
  const customGrad = tf.customGrad as unknown as (
    f: (...args: unknown[]) => { value: TfTensor; gradFunc: (dy: TfTensor, saved: TfTensor[]) => TfTensor[] },
  ) => (...inputs: TfTensor[]) => TfTensor;
  const tensor = tf.tensor as unknown as (values: Float32Array, shape: number[], dtype: 'float32') => TfTensor;
  const tidy = tf.tidy as unknown as (fn: () => TfTensor) => TfTensor;

  class WasmBatchNormalization extends Layer implements TfjsBatchNormalization {
    static className = LAYER_CLASS_NAME;
    readonly axis: number;
    readonly momentum: number;
    readonly epsilon: number;
    readonly center: boolean;
    readonly scale: boolean;
    readonly engine: Engine;
    private readonly initializers: Record<'beta' | 'gamma' | 'movingMean' | 'movingVariance', TfSerializable | null>;
    private readonly regularizers: Record<'beta' | 'gamma', TfSerializable | null>;
    private readonly constraints: Record<'beta' | 'gamma', TfSerializable | null>;
    private gamma: TfLayerVariable | null = null;
    private beta: TfLayerVariable | null = null;
    private movingMean: TfLayerVariable | null = null;
    private movingVariance: TfLayerVariable | null = null;

    constructor(config: TfjsBatchNormalizationConfig = {}, engine?: Engine) {
      if (config === null || typeof config !== 'object') throw new InvalidArgumentError('config', 'an object', describe(config));
      const layerArgs: Record<string, unknown> = { ...config };
      for (const k of OWN_KEYS) delete layerArgs[k];
      super(layerArgs);
      const e = engine ?? bound?.engine;
      if (!(e instanceof EngineClass)) throw new InvalidArgumentError('engine', 'an Engine from createEngine()', describe(e));
      this.engine = e;
      this.axis = checkNumber(config.axis, 'config.axis', -1, Number.isInteger, 'an integer (one axis)');
      this.momentum = checkNumber(config.momentum, 'config.momentum', 0.99, (v) => v >= 0 && v <= 1, 'a number in [0, 1] (weight of the old moving value)');
      this.epsilon = checkNumber(config.epsilon, 'config.epsilon', 1e-3, (v) => Number.isFinite(v) && v >= 2 ** -126, 'a finite number >= 2^-126');
      this.center = checkFlag(config.center, 'config.center');
      this.scale = checkFlag(config.scale, 'config.scale');
      this.initializers = {
        beta: deserialize(tf, config.betaInitializer ?? 'zeros', 'config.betaInitializer'),
        gamma: deserialize(tf, config.gammaInitializer ?? 'ones', 'config.gammaInitializer'),
        movingMean: deserialize(tf, config.movingMeanInitializer ?? 'zeros', 'config.movingMeanInitializer'),
        movingVariance: deserialize(tf, config.movingVarianceInitializer ?? 'ones', 'config.movingVarianceInitializer'),
      };
      this.regularizers = {
        beta: deserialize(tf, config.betaRegularizer, 'config.betaRegularizer'),
        gamma: deserialize(tf, config.gammaRegularizer, 'config.gammaRegularizer'),
      };
      this.constraints = {
        beta: deserialize(tf, config.betaConstraint, 'config.betaConstraint'),
        gamma: deserialize(tf, config.gammaConstraint, 'config.gammaConstraint'),
      };
    }

    /** The axis as a non-negative index for inputs of rank `rank`. */
    private channelAxis(shape: readonly (number | null)[]): number {
      const axis = this.axis < 0 ? this.axis + shape.length : this.axis;
      if (!(axis >= 0 && axis < shape.length)) {
        throw new ShapeError('config.axis', `an axis of an input of rank ${shape.length}`, String(this.axis));
      }
      return axis;
    }

    build(inputShape: (number | null)[] | (number | null)[][]): void {
      const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as (number | null)[];
      const axis = this.channelAxis(shape);
      const C = shape[axis];
      if (typeof C !== 'number' || !(C >= 1)) {
        throw new ShapeError('inputShape', `a defined dimension on axis ${this.axis}`, `[${shape.join(', ')}]`);
      }
      // Keras' order (tfjs-layers' BatchNormalization): gamma, beta, moving_mean, moving_variance.
      const i = this.initializers;
      if (this.scale) this.gamma = this.addWeight('gamma', [C], undefined, i.gamma, this.regularizers.gamma, true, this.constraints.gamma);
      if (this.center) this.beta = this.addWeight('beta', [C], undefined, i.beta, this.regularizers.beta, true, this.constraints.beta);
      this.movingMean = this.addWeight('moving_mean', [C], undefined, i.movingMean, null, false);
      this.movingVariance = this.addWeight('moving_variance', [C], undefined, i.movingVariance, null, false);
      this.built = true;
    }

    computeOutputShape(inputShape: unknown): unknown {
      return inputShape;
    }

    call(inputs: TfTensor | TfTensor[], kwargs: { training?: boolean } = {}): TfTensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return tidy(() => this.normalize(x, kwargs.training === true));
    }

    /** y for x; training: batch statistics, moving statistics updated; the gradient is ours either way. */
    private normalize(x: TfTensor, training: boolean): TfTensor {
      const shape = x.shape;
      const axis = this.channelAxis(shape);
      const C = shape[axis]!;
      const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
      const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
      const layout = inner === 1 ? 'NHWC' : 'NCHW';
      const engineShape = inner === 1 ? [outer, C] : [outer, C, inner];
      const { gamma, beta, movingMean, movingVariance, engine } = this;
      const conv = functionalOptions('keras', { momentum: this.momentum, eps: this.epsilon });
      const params = [...(gamma ? [gamma.read()] : []), ...(beta ? [beta.read()] : [])];
      const f = customGrad((...args: unknown[]) => {
        const save = args.pop() as (tensors: TfTensor[]) => void;
        const [xt, ...ps] = args as TfTensor[];
        const weight = gamma ? Float32Array.from(ps[0]!.dataSync()) : null;
        const bias = beta ? Float32Array.from(ps[gamma ? 1 : 0]!.dataSync()) : null;
        const runningMean = Float32Array.from(movingMean!.read().dataSync());
        const runningVar = Float32Array.from(movingVariance!.read().dataSync());
        const { y, saveMean, saveInvStd } = engine.forward(xt!.dataSync() as Float32Array, engineShape, {
          layout, training, weight, bias, runningMean, runningVar, eps: conv.eps,
          momentum: conv.momentum, unbiasedRunningVar: conv.unbiasedRunningVar,
        });
        if (training) {
          movingMean!.write(tensor(runningMean, [C], 'float32'));
          movingVariance!.write(tensor(runningVar, [C], 'float32'));
        }
        save([xt!]);
        return {
          value: tensor(y, shape, 'float32'),
          gradFunc: (dy: TfTensor, saved: TfTensor[]) => {
            const { dx, dweight, dbias } = engine.backward(dy.dataSync() as Float32Array, saved[0]!.dataSync() as Float32Array, engineShape, {
              layout, training, weight, saveMean, saveInvStd,
            });
            return [
              tensor(dx, shape, 'float32'),
              ...(gamma ? [tensor(dweight, [C], 'float32')] : []),
              ...(beta ? [tensor(dbias, [C], 'float32')] : []),
            ];
          },
        };
      });
      return f(x, ...params);
    }

    getConfig(): Record<string, unknown> {
      return {
        axis: this.axis, momentum: this.momentum, epsilon: this.epsilon, center: this.center, scale: this.scale,
        betaInitializer: serialize(this.initializers.beta), gammaInitializer: serialize(this.initializers.gamma),
        movingMeanInitializer: serialize(this.initializers.movingMean), movingVarianceInitializer: serialize(this.initializers.movingVariance),
        betaRegularizer: serialize(this.regularizers.beta), gammaRegularizer: serialize(this.regularizers.gamma),
        betaConstraint: serialize(this.constraints.beta), gammaConstraint: serialize(this.constraints.gamma),
        ...super.getConfig(),
      };
    }
  }
  tf.serialization.registerClass(WasmBatchNormalization as never);
  return WasmBatchNormalization;
}

function checkTfjs(tf: unknown): TfjsLayersNamespace {
  const t = tf as Partial<TfjsLayersNamespace> | null;
  if (t === null || typeof t !== 'object' || typeof t.layers?.Layer !== 'function' || typeof t.customGrad !== 'function'
    || typeof t.serialization?.registerClass !== 'function') {
    throw new InvalidArgumentError('tf', 'a tfjs namespace with layers.Layer, customGrad and serialization (@tensorflow/tfjs, or { ...tfjsCore, layers: tfjsLayers.layers })', describe(tf));
  }
  return t as TfjsLayersNamespace;
}

/**
 * Binds the adapter's layer to a tfjs namespace: builds the layer class on `tf.layers.Layer`,
 * registers it with `tf.serialization` (class name 'WasmBatchNormalization') and makes `engine`
 * the engine of layers made without one (batchNormalization's default, and every layer
 * tf.loadLayersModel deserializes). Call it once before building or loading models; calling it
 * again rebinds (same class for the same namespace).
 */
export function useTfjs(tf: TfjsLayersNamespace, engine: Engine): void {
  const t = checkTfjs(tf);
  if (!(engine instanceof EngineClass)) throw new InvalidArgumentError('engine', 'an Engine from createEngine()', describe(engine));
  let cls = classes.get(t);
  if (cls === undefined) {
    cls = makeClass(t);
    classes.set(t, cls);
  }
  bound = { tf: t, engine, cls };
}

/**
 * Keras' BatchNormalization as a tfjs layer (a `tf.layers.Layer`) whose training forward and
 * gradient are ours; `engine` runs it. Needs useTfjs(tf, engine) first.
 */
export function batchNormalization(engine: Engine, config: TfjsBatchNormalizationConfig = {}): TfjsBatchNormalization {
  if (bound === null) {
    throw new InvalidArgumentError('tf', 'useTfjs(tf, engine) called before batchNormalization()', 'no tfjs namespace bound');
  }
  if (!(engine instanceof EngineClass)) throw new InvalidArgumentError('engine', 'an Engine from createEngine()', describe(engine));
  return new bound.cls(config, engine);
}
