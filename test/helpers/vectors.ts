// Loading and mapping of the peer test vectors in ../shared/vectors/ (see its README.md):
// ONNX backend node tests + onnxruntime, TensorFlow.js tfjs-core, PyTorch. This file only
// parses the JSON and translates each case into the engine's conventions (layout, shape,
// per-channel parameters, eps, momentum); test/vectors.test.ts runs the engine and compares.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { Layout } from '../../src/index.js';

export type Kind = 'inference' | 'training' | 'backward_inference' | 'error';
export const KINDS: readonly Kind[] = ['inference', 'training', 'backward_inference', 'error'];

/** Pass iff |actual - expected| <= atol + rtol * |expected|. */
export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface TensorSpec {
  shape: number[];
  /** null only where the vector says the values are irrelevant (the `error` case). */
  data: number[] | null;
}

export interface OutputSpec extends TensorSpec {
  /** Per-output tolerance; overrides the vector's. */
  tolerance: Tolerance | null;
}

export interface ErrorSpec {
  type: string;
  message: string;
}

export interface Vector {
  id: string;
  file: string;
  framework: string;
  kind: Kind;
  /** Axis the statistics are NOT taken over (negative counts from the end), or null if only reduction_axes is given. */
  channelAxis: number | null;
  reductionAxes: number[] | null;
  attributes: Record<string, unknown>;
  momentumConvention: string | null;
  runningVarEstimator: string | null;
  inputs: Record<string, TensorSpec>;
  outputs: Record<string, OutputSpec>;
  error: ErrorSpec | null;
  tolerance: Tolerance | null;
}

/** One JSON file: parsed, or the reason it could not be (reported as that file's failing test). */
export type LoadedVector = { file: string; vector: Vector } | { file: string; vector: null; problem: string };

// ---------------------------------------------------------------------------------------
// Discovery and parsing.

export const VECTOR_FOLDERS = ['onnx', 'tfjs', 'pytorch'] as const;
export type VectorFolder = (typeof VECTOR_FOLDERS)[number];

export function vectorsRootExists(root: URL): boolean {
  return existsSync(root) && statSync(root).isDirectory();
}

/** Every *.json directly in `root/folder/`, sorted; [] when the folder is missing. */
export function listVectorFiles(root: URL, folder: string): string[] {
  const dir = new URL(`${folder}/`, root);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.json'))
    .map((e) => e.name)
    .sort();
}

export function loadVectorFile(root: URL, folder: string, name: string): LoadedVector {
  const file = `${folder}/${name}`;
  try {
    const json: unknown = JSON.parse(readFileSync(new URL(file, root), 'utf8'));
    return { file, vector: parseVector(json, file) };
  } catch (error) {
    return { file, vector: null, problem: error instanceof Error ? error.message : String(error) };
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function fail(file: string, what: string): never {
  throw new Error(`${file}: ${what}`);
}

/**
 * A number from the JSON. NaN (and infinities, should a vector carry them) are written as
 * strings; anything else that is not a number is an error, never a silent 0.
 */
export function decodeNumber(value: unknown, where: string): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') {
    const s = value.trim().toLowerCase();
    if (s === 'nan') return NaN;
    if (s === 'infinity' || s === 'inf' || s === '+infinity' || s === '+inf') return Infinity;
    if (s === '-infinity' || s === '-inf') return -Infinity;
  }
  throw new Error(`${where}: expected a number or "NaN", got ${JSON.stringify(value)}`);
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function parseShape(value: unknown, where: string): number[] {
  if (!Array.isArray(value) || !value.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`${where}.shape: expected an array of non-negative integers, got ${JSON.stringify(value)}`);
  }
  return value as number[];
}

function parseTolerance(value: unknown, where: string): Tolerance | null {
  if (value === undefined || value === null) return null;
  if (!isRecord(value)) throw new Error(`${where}: expected {atol, rtol}, got ${JSON.stringify(value)}`);
  const atol = decodeNumber(value.atol ?? 0, `${where}.atol`);
  const rtol = decodeNumber(value.rtol ?? 0, `${where}.rtol`);
  if (!(atol >= 0) || !(rtol >= 0)) throw new Error(`${where}: atol and rtol must be >= 0`);
  return { atol, rtol };
}

function parseTensor(value: unknown, where: string, allowNullData: boolean): TensorSpec {
  if (!isRecord(value)) throw new Error(`${where}: expected {shape, data}`);
  const shape = parseShape(value.shape, where);
  if (value.data === null || value.data === undefined) {
    if (!allowNullData) throw new Error(`${where}.data is missing`);
    return { shape, data: null };
  }
  // Tolerate nested (non-flat) arrays by flattening in row-major order.
  const raw = Array.isArray(value.data) ? (value.data as unknown[]).flat(Infinity) : [value.data];
  const data = raw.map((v, i) => decodeNumber(v, `${where}.data[${i}]`));
  if (data.length !== product(shape)) {
    throw new Error(`${where}: ${data.length} values for shape [${shape.join(', ')}] (${product(shape)} expected)`);
  }
  return { shape, data };
}

export function parseVector(json: unknown, file: string): Vector {
  if (!isRecord(json)) fail(file, 'not a JSON object');
  const id = typeof json.id === 'string' && json.id !== '' ? json.id : fail(file, 'missing `id`');
  const kind = json.kind as Kind;
  if (!KINDS.includes(kind)) fail(file, `unknown kind ${JSON.stringify(json.kind)}`);
  const channelAxis = json.channel_axis === undefined || json.channel_axis === null ? null : json.channel_axis;
  if (channelAxis !== null && !Number.isInteger(channelAxis)) fail(file, `channel_axis ${JSON.stringify(channelAxis)}`);
  const reductionAxes = json.reduction_axes === undefined || json.reduction_axes === null ? null : json.reduction_axes;
  if (reductionAxes !== null && !(Array.isArray(reductionAxes) && reductionAxes.every((a) => Number.isInteger(a)))) {
    fail(file, `reduction_axes ${JSON.stringify(reductionAxes)}`);
  }
  if (channelAxis === null && reductionAxes === null) fail(file, 'neither channel_axis nor reduction_axes');
  const attributes = isRecord(json['op attributes']) ? json['op attributes'] : {};

  if (!isRecord(json.inputs)) fail(file, 'missing `inputs`');
  if (!isRecord(json.outputs)) fail(file, 'missing `outputs`');
  const inputs: Record<string, TensorSpec> = {};
  for (const [name, spec] of Object.entries(json.inputs)) {
    inputs[name] = parseTensor(spec, `${file} inputs.${name}`, kind === 'error');
  }
  const outputs: Record<string, OutputSpec> = {};
  let error: ErrorSpec | null = null;
  for (const [name, spec] of Object.entries(json.outputs)) {
    if (kind === 'error' && name === 'error') {
      if (!isRecord(spec) || typeof spec.message !== 'string') fail(file, 'outputs.error needs a `message`');
      error = { type: String(spec.type ?? ''), message: spec.message };
      continue;
    }
    const tensor = parseTensor(spec, `${file} outputs.${name}`, false);
    const tolerance = parseTolerance(isRecord(spec) ? spec.tolerance : undefined, `${file} outputs.${name}.tolerance`);
    outputs[name] = { ...tensor, tolerance };
  }
  if (kind === 'error' && error === null) fail(file, 'kind `error` without outputs.error');
  const tolerance = parseTolerance(json.tolerance, `${file} tolerance`);
  if (kind !== 'error') {
    if (Object.keys(outputs).length === 0) fail(file, 'no outputs to check');
    for (const [name, out] of Object.entries(outputs)) {
      if (!out.tolerance && !tolerance) fail(file, `no tolerance for output ${name}`);
    }
  }
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  return {
    id, file, framework: String(json.framework ?? file.split('/')[0]), kind,
    channelAxis: channelAxis as number | null, reductionAxes: reductionAxes as number[] | null,
    attributes, momentumConvention: str(json.momentum_convention), runningVarEstimator: str(json.running_var_estimator),
    inputs, outputs, error, tolerance,
  };
}

// ---------------------------------------------------------------------------------------
// Comparison.

export function withinTolerance(actual: number, expected: number, tol: Tolerance): boolean {
  if (Number.isNaN(expected)) return Number.isNaN(actual);
  if (actual === expected) return true; // also equal infinities
  return Math.abs(actual - expected) <= tol.atol + tol.rtol * Math.abs(expected);
}

/**
 * Mismatch descriptions (empty when everything is within tolerance), each naming the vector
 * id, output, index, expected and actual value. At most `limit` are listed, plus a count.
 */
export function compareOutput(
  id: string, name: string, actual: ArrayLike<number>, expected: readonly number[], tol: Tolerance, limit = 20,
): string[] {
  if (actual.length !== expected.length) {
    return [`${id} output ${name}: length ${actual.length}, expected ${expected.length}`];
  }
  const problems: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    if (withinTolerance(actual[i], expected[i], tol)) continue;
    count++;
    if (problems.length < limit) {
      const diff = Math.abs(actual[i] - expected[i]);
      const allowed = tol.atol + tol.rtol * Math.abs(expected[i]);
      const why = Number.isNaN(expected[i]) ? 'NaN must give NaN'
        : Number.isNaN(actual[i]) ? 'NaN where a number is expected'
          : `|diff| ${diff} > ${allowed} = atol ${tol.atol} + rtol ${tol.rtol}*|e|`;
      problems.push(`${id} output ${name}[${i}]: expected ${expected[i]}, actual ${actual[i]} (${why})`);
    }
  }
  if (count > problems.length) problems.push(`${id} output ${name}: ... ${count - problems.length} more mismatches`);
  return problems;
}

// ---------------------------------------------------------------------------------------
// Mapping a vector to engine calls.

/** A per-channel (or, in elementwise mode, per-element) float32 parameter. */
export type Param = Float32Array | null;

export interface EngineCase {
  /** Shape and layout handed to the engine (may be a reshape of the vector's X; same row-major data). */
  shape: number[];
  layout: Layout;
  /**
   * true when the parameters are not per channel (tfjs full-shape or broadcast parameters):
   * they are expanded to one value per element and the engine sees shape [1, numel] NHWC, i.e.
   * every element is its own "channel". Only valid for inference-mode math.
   */
  elementwise: boolean;
  /** Maps a per-element gradient back onto a parameter's own shape by summing (elementwise mode). */
  reduceToParam: ((perElement: ArrayLike<number>, param: 'weight' | 'bias' | 'mean' | 'var') => Float64Array) | null;
  x: Float32Array;
  dy: Float32Array | null;
  /** Fresh arrays on each call: training mutates the running statistics. */
  weight: () => Param;
  bias: () => Param;
  mean: () => Param;
  variance: () => Param;
  eps: number;
  /** Our convention: weight of the NEW batch. */
  momentum: number;
  unbiasedRunningVar: boolean;
  /** Number of calls; `feedBack`: each call's y is the next call's x (apply_times). */
  times: number;
  feedBack: boolean;
}

export type Mapping = { ok: true; engineCase: EngineCase } | { ok: false; reason: string };

const INPUT_ALIASES: Record<string, 'x' | 'weight' | 'bias' | 'mean' | 'var' | 'dy'> = {
  X: 'x', x: 'x', input: 'x',
  scale: 'weight', weight: 'weight', gamma: 'weight',
  B: 'bias', bias: 'bias', offset: 'bias', beta: 'bias',
  input_mean: 'mean', running_mean: 'mean', mean: 'mean',
  input_var: 'var', running_var: 'var', var: 'var', variance: 'var',
  dy: 'dy', dY: 'dy', grad_output: 'dy',
};

/** Framework defaults (README): ONNX eps 1e-5, momentum 0.9; PyTorch 1e-5, 0.1; tfjs varianceEpsilon 1e-3. */
function defaultEps(framework: string): number {
  return framework === 'tfjs' ? 1e-3 : 1e-5;
}

function attrNumber(attrs: Record<string, unknown>, names: readonly string[]): number | null | undefined {
  for (const name of names) {
    if (name in attrs) {
      const v = attrs[name];
      if (v === null) return null;
      return decodeNumber(v, `op attributes.${name}`);
    }
  }
  return undefined;
}

/** The vector's channel axis, normalized to [0, rank). For rank 1 with axis 1 (ONNX 1-D X): C = 1 -> null. */
function resolveChannelAxis(v: Vector, rank: number): number | 'none' {
  if (rank === 0) return 'none';
  if (v.channelAxis !== null) {
    if (v.channelAxis === 1 && rank === 1) return 'none';
    const axis = v.channelAxis < 0 ? rank + v.channelAxis : v.channelAxis;
    if (axis < 0 || axis >= rank) throw new Error(`channel_axis ${v.channelAxis} out of range for rank ${rank}`);
    return axis;
  }
  const reduced = new Set(v.reductionAxes!.map((a) => (a < 0 ? rank + a : a)));
  const kept = [...Array(rank).keys()].filter((a) => !reduced.has(a));
  if (kept.length === 0) return 'none';
  if (kept.length !== 1) throw new Error(`reduction_axes ${JSON.stringify(v.reductionAxes)} keep ${kept.length} axes`);
  return kept[0];
}

/**
 * Flat index into a parameter of shape `pShape` for each element of x (shape `xShape`), by
 * numpy right-aligned broadcasting; null if the shapes do not broadcast.
 */
export function broadcastIndex(xShape: readonly number[], pShape: readonly number[]): Int32Array | null {
  if (pShape.length > xShape.length) {
    // Leading 1s beyond x's rank are harmless.
    if (pShape.slice(0, pShape.length - xShape.length).some((d) => d !== 1)) return null;
    pShape = pShape.slice(pShape.length - xShape.length);
  }
  const offset = xShape.length - pShape.length;
  for (let j = 0; j < pShape.length; j++) {
    if (pShape[j] !== 1 && pShape[j] !== xShape[offset + j]) return null;
  }
  const size = product(xShape);
  const index = new Int32Array(size);
  const idx = new Array<number>(xShape.length).fill(0);
  for (let i = 0; i < size; i++) {
    let p = 0;
    for (let j = 0; j < pShape.length; j++) p = p * pShape[j] + (pShape[j] === 1 ? 0 : idx[offset + j]);
    index[i] = p;
    for (let d = xShape.length - 1; d >= 0; d--) {
      if (++idx[d] < xShape[d]) break;
      idx[d] = 0;
    }
  }
  return index;
}

/** Is this parameter one value per channel (shape [C], or [1, .., C, .., 1] with C on the channel axis)? */
function perChannel(pShape: readonly number[], xShape: readonly number[], axis: number | 'none', C: number): boolean {
  if (product(pShape) !== C) return false;
  if (pShape.length <= 1) return true;
  if (axis === 'none') return pShape.every((d) => d === 1);
  // Same rank as x (or right-aligned): C in the channel axis position, 1 elsewhere.
  const offset = xShape.length - pShape.length;
  return pShape.every((d, j) => (j + offset === axis ? d === C : d === 1));
}

export function mapVector(v: Vector): Mapping {
  const named: Partial<Record<'x' | 'weight' | 'bias' | 'mean' | 'var' | 'dy', TensorSpec>> = {};
  for (const [name, spec] of Object.entries(v.inputs)) {
    const role = INPUT_ALIASES[name];
    if (!role) return { ok: false, reason: `unknown input ${JSON.stringify(name)}` };
    if (named[role]) return { ok: false, reason: `two inputs map to ${role}` };
    named[role] = spec;
  }
  const xSpec = named.x;
  if (!xSpec) return { ok: false, reason: 'no X input' };
  const xShape = xSpec.shape;
  const rank = xShape.length;
  const size = product(xShape);
  if (size === 0) return { ok: false, reason: 'empty X' };
  // The error case carries no values ("any data of this shape"): a fixed, non-constant fill.
  const xData = xSpec.data ?? Array.from({ length: size }, (_, i) => Math.sin(i + 1));

  let axis: number | 'none';
  try {
    axis = resolveChannelAxis(v, rank);
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  }

  // Engine shape/layout for per-channel parameters. The engine wants rank >= 2 with the channel
  // axis at 1 (NCHW) or last (NHWC); any other axis k is the same math on [outer, C, inner] NCHW.
  let shape: number[];
  let layout: Layout;
  if (axis === 'none') {
    // ONNX: "a 1-D X of size N means C = 1" -> [N, 1]; same for a rank-0 X.
    shape = [size, 1];
    layout = 'NCHW';
  } else if (rank === 1) {
    // tfjs rank-1 x with [C] parameters (tfjs reshapes rank < 4 to 4-D with leading 1s): [1, C].
    shape = [1, xShape[0]];
    layout = 'NHWC';
  } else if (axis === 1) {
    shape = [...xShape];
    layout = 'NCHW';
  } else if (axis === rank - 1) {
    shape = [...xShape];
    layout = 'NHWC';
  } else {
    shape = [product(xShape.slice(0, axis)), xShape[axis], product(xShape.slice(axis + 1))];
    layout = 'NCHW';
  }
  const C = axis === 'none' ? 1 : xShape[axis];

  const params = { weight: named.weight, bias: named.bias, mean: named.mean, var: named.var };
  for (const [role, spec] of Object.entries(params)) {
    if (spec && spec.data === null) return { ok: false, reason: `input ${role} has no data` };
  }
  const allPerChannel = Object.values(params).every((p) => !p || perChannel(p.shape, xShape, axis, C));

  let elementwise = false;
  let reduceToParam: EngineCase['reduceToParam'] = null;
  let expand: (spec: TensorSpec | undefined) => number[] | null = (spec) => (spec ? spec.data! : null);
  if (!allPerChannel) {
    // tfjs also accepts full-shape or broadcastable (e.g. [1,1,1,1]) parameters. In inference
    // math every element only needs its own (mean, var, scale, offset), so expand each
    // parameter to x's full shape (right-aligned broadcasting = tfjs's cyclic indexing for these
    // shapes) and give the engine shape [1, numel] NHWC: one "channel" per element. Gradients of
    // a broadcast parameter are then the per-element ones summed back onto its shape.
    if (v.kind === 'training' || v.kind === 'error') {
      return { ok: false, reason: 'training with parameters that are not one per channel has no meaning in this engine' };
    }
    const indices: Partial<Record<'weight' | 'bias' | 'mean' | 'var', { index: Int32Array; length: number }>> = {};
    for (const [role, spec] of Object.entries(params) as [keyof typeof params, TensorSpec | undefined][]) {
      if (!spec) continue;
      const index = broadcastIndex(xShape, spec.shape);
      if (!index) return { ok: false, reason: `input ${role} of shape [${spec.shape}] does not broadcast to x [${xShape}]` };
      indices[role] = { index, length: product(spec.shape) };
    }
    expand = (spec) => {
      if (!spec) return null;
      const index = broadcastIndex(xShape, spec.shape)!;
      return Array.from(index, (p) => spec.data![p]);
    };
    reduceToParam = (perElement, role) => {
      const entry = indices[role];
      if (!entry) throw new Error(`no ${role} parameter to reduce onto`);
      const out = new Float64Array(entry.length);
      for (let i = 0; i < entry.index.length; i++) out[entry.index[i]] += perElement[i];
      return out;
    };
    elementwise = true;
    shape = [1, size];
    layout = 'NHWC';
  }

  const f32 = (values: number[] | null): (() => Param) => () => (values ? Float32Array.from(values) : null);
  const weightValues = expand(params.weight);
  const biasValues = expand(params.bias);
  const meanValues = expand(params.mean);
  const varValues = expand(params.var);

  const attrs = v.attributes;
  const eps = attrNumber(attrs, ['epsilon', 'eps', 'varianceEpsilon', 'variance_epsilon']) ?? defaultEps(v.framework);

  // Momentum: ONNX/Keras weight the OLD value (new = old*m + batch*(1-m)); ours is the weight of
  // the new batch, so ours = 1 - m. PyTorch's is already ours.
  const convention = (v.momentumConvention ?? (v.framework === 'pytorch' ? 'pytorch' : 'onnx')).toLowerCase();
  const oldWeighted = convention.startsWith('onnx') || convention.startsWith('keras');
  if (!oldWeighted && !convention.startsWith('pytorch')) return { ok: false, reason: `unknown momentum_convention ${convention}` };
  const m = attrNumber(attrs, ['momentum']);
  if (m === null && v.kind === 'training') {
    return { ok: false, reason: 'momentum None (cumulative average) needs num_batches_tracked, which no vector carries' };
  }
  const rawMomentum = m ?? (oldWeighted ? 0.9 : 0.1);
  const momentum = oldWeighted ? 1 - rawMomentum : rawMomentum;

  const estimator = (v.runningVarEstimator ?? (v.framework === 'pytorch' ? 'unbiased' : 'biased')).toLowerCase();
  const unbiasedRunningVar = estimator.startsWith('unbiased');
  if (!unbiasedRunningVar && !estimator.startsWith('biased')) return { ok: false, reason: `unknown running_var_estimator ${estimator}` };

  const applyTimes = attrNumber(attrs, ['apply_times']) ?? null;
  const sameInput = attrNumber(attrs, ['apply_times_same_input']) ?? null;
  if (applyTimes !== null && sameInput !== null) return { ok: false, reason: 'both apply_times and apply_times_same_input' };
  // apply_times N: N applications in all, each fed the previous output ("feed output back N times").
  const times = applyTimes ?? sameInput ?? 1;
  if (!Number.isInteger(times) || times < 1) return { ok: false, reason: `apply_times ${times}` };

  if (v.kind === 'backward_inference' && !named.dy) return { ok: false, reason: 'backward case without dy' };
  if ((v.kind === 'inference' || v.kind === 'backward_inference') && (!params.mean || !params.var)) {
    return { ok: false, reason: 'inference case without mean/variance' };
  }
  if (named.dy && named.dy.data && named.dy.data.length !== size) return { ok: false, reason: 'dy and x differ in size' };

  return {
    ok: true,
    engineCase: {
      shape, layout, elementwise, reduceToParam,
      x: Float32Array.from(xData),
      dy: named.dy?.data ? Float32Array.from(named.dy.data) : null,
      weight: f32(weightValues), bias: f32(biasValues), mean: f32(meanValues), variance: f32(varValues),
      eps, momentum, unbiasedRunningVar, times, feedBack: applyTimes !== null,
    },
  };
}

/** Tolerance for one output: its own, else the vector's. */
export function toleranceFor(v: Vector, output: string): Tolerance {
  const tol = v.outputs[output]?.tolerance ?? v.tolerance;
  if (!tol) throw new Error(`${v.id}: no tolerance for output ${output}`);
  return tol;
}
