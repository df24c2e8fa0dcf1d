// The few TensorFlow.js shapes the adapter touches, declared structurally so that this package's
// published declarations compile for users without @tensorflow/* installed (no import of tfjs,
// not even `import type`). The real namespaces are assignable to them: test/tfjs.test.ts passes
// `@tensorflow/tfjs-core` (+ `tfjs-layers`) to every entry point under `tsc --noEmit`.

/** A tensor as a kernel sees it (tfjs-core's TensorInfo). */
export interface TfTensorInfo {
  readonly dataId: object;
  readonly shape: readonly number[];
  readonly dtype: string;
}

/** The arguments tfjs passes to a kernel function. */
export interface TfKernelArgs {
  inputs: Record<string, TfTensorInfo | null | undefined>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

/** tfjs-core's KernelConfig. */
export interface TfKernelConfig {
  kernelName: string;
  backendName: string;
  kernelFunc: (args: TfKernelArgs) => unknown;
  setupFunc?: (backend: never) => void;
  disposeFunc?: (backend: never) => void;
}

/** The part of `@tensorflow/tfjs-core` the kernel override uses. */
export interface TfjsKernelRegistry {
  getKernel(kernelName: string, backendName: string): unknown;
  registerKernel(config: never): void;
  unregisterKernel(kernelName: string, backendName: string): void;
}

/** A tfjs Tensor, as far as the layer uses one. */
export interface TfTensor {
  readonly shape: number[];
  readonly dtype: string;
  readonly rank: number;
  dataSync(): ArrayLike<number>;
}

/** tfjs-layers' LayerVariable. */
export interface TfLayerVariable {
  read(): TfTensor;
  write(value: TfTensor): unknown;
  readonly name: string;
}

/** What a tfjs-layers Layer subclass calls on `this`. */
export interface TfLayerBase {
  built: boolean;
  readonly name: string;
  readonly trainable: boolean;
  addWeight(
    name: string, shape: number[], dtype?: string, initializer?: unknown, regularizer?: unknown, trainable?: boolean, constraint?: unknown,
  ): TfLayerVariable;
  getConfig(): Record<string, unknown>;
  getClassName(): string;
}

/** tfjs-layers' `Layer` class (`tf.layers.Layer`). */
export type TfLayerClass = abstract new (config: never) => object;

/** A registered serializable (initializers, regularizers, constraints). */
export interface TfSerializable {
  getClassName(): string;
  getConfig(): Record<string, unknown>;
}

/**
 * What the layer needs: tfjs-core's functions plus tfjs-layers' `layers.Layer`. With the union
 * package `@tensorflow/tfjs` that is `tf` itself; with the split packages `{ ...tfc, layers: tfl.layers }`.
 */
export interface TfjsLayersNamespace {
  layers: { Layer: TfLayerClass };
  serialization: {
    registerClass(cls: never): unknown;
    SerializationMap: { getMap(): { classNameMap: Record<string, [unknown, unknown]> } };
  };
  customGrad(f: never): (...args: never[]) => unknown;
  tensor(values: Float32Array, shape: number[], dtype: 'float32'): unknown;
  tidy(fn: () => never): unknown;
}
