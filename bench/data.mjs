// Seeded input data for one case and the correctness check every contender goes through.
//
// Data: per channel c, x = mu[c] + sd[c]·g with mu in [-1, 1), sd in [0.5, 2) and g drawn from a
// pool of ~1M pseudo-normal values (mulberry32, sum of four uniforms); dy = g'. Filling a 103 MB
// tensor this way takes a few tens of ms, so data is made per case and dropped afterwards.
//
// Reference: the package's float64 oracle (oracleForward/oracleBackward), run on a subset of at most
// CHECK_CHANNELS channels. Batch norm is independent per channel, so the sub-tensor made of those
// channels has exactly the expected values of those channels; this keeps the check cheap on the
// 25.7M-value shapes while every value of the checked channels is compared.
import { oracleForward, oracleBackward } from './package-under-test.mjs';
import { mulberry32 } from './prng.mjs';

export const EPS = 1e-5;
export const MOMENTUM = 0.1; // PyTorch convention (ONNX: 1 − 0.1 = 0.9)
const CHECK_CHANNELS = 8;
/** Relative error (max |err| / max |expected| per output) above which a result is marked wrong. */
export const WRONG_ABOVE = 1e-3;

const POOL_SIZE = (1 << 20) + 7; // not a power of two, so the pool does not line up with planes
let pool = null;
function noisePool() {
  if (pool) return pool;
  const rand = mulberry32(0x5eed);
  pool = new Float32Array(POOL_SIZE);
  // Sum of four uniforms, scaled to unit variance: close enough to normal for timing and checks.
  for (let i = 0; i < POOL_SIZE; i++) pool[i] = (rand() + rand() + rand() + rand() - 2) * Math.SQRT2 * Math.sqrt(1.5);
  return pool;
}

/** outer × C × inner view of a case (inner = 1 for channels-last). */
export function geometryOf(c) {
  if (c.layout === 'NHWC' || c.dims.length === 2) return { outer: c.size / c.C, C: c.C, inner: 1 };
  const inner = c.dims.slice(2).reduce((p, d) => p * d, 1);
  return { outer: c.dims[0], C: c.C, inner };
}

/** Fills a tensor of the case's layout: value(i) = mu[c] + sd[c]·pool[(i + offset) % POOL]. */
function fill(c, mu, sd, offset) {
  const g = noisePool();
  const { outer, C, inner } = geometryOf(c);
  const out = new Float32Array(c.size);
  let i = 0, k = offset % POOL_SIZE;
  for (let o = 0; o < outer; o++) {
    if (inner === 1) {
      for (let ch = 0; ch < C; ch++) {
        out[i++] = mu[ch] + sd[ch] * g[k];
        if (++k === POOL_SIZE) k = 0;
      }
    } else {
      for (let ch = 0; ch < C; ch++) {
        const m = mu[ch], s = sd[ch];
        for (let j = 0; j < inner; j++) {
          out[i++] = m + s * g[k];
          if (++k === POOL_SIZE) k = 0;
        }
      }
    }
  }
  return out;
}

/**
 * Inputs of one case: x (and dy for backward), weight, bias, runningMean, runningVar (length C).
 * Contenders get their own copies of the running statistics (training updates them in place).
 */
export function makeInputs(c, op, seed = 12345) {
  const rand = mulberry32(seed ^ c.size ^ (c.C << 8));
  const C = c.C;
  const f32 = (f) => Float32Array.from({ length: C }, f);
  const mu = f32(() => 2 * rand() - 1);
  const sd = f32(() => 0.5 + 1.5 * rand());
  const weight = f32(() => 0.5 + rand());
  const bias = f32(() => rand() - 0.5);
  const runningMean = f32((_, ch) => mu[ch] + 0.05 * sd[ch] * (rand() - 0.5));
  const runningVar = f32((_, ch) => sd[ch] * sd[ch] * (0.8 + 0.45 * rand()));
  const x = fill(c, mu, sd, 0);
  const dy = op === 'backward' ? fill(c, new Float32Array(C), new Float32Array(C).fill(1), 524287) : null;
  return { x, dy, weight, bias, runningMean, runningVar };
}

// ---------------------------------------------------------------------------------------------
// Reference on a channel subset.

/** Up to CHECK_CHANNELS channels spread over 0..C-1 (first and last included). */
export function checkChannels(C) {
  if (C <= CHECK_CHANNELS) return Array.from({ length: C }, (_, i) => i);
  const set = new Set();
  for (let i = 0; i < CHECK_CHANNELS; i++) set.add(Math.round((i * (C - 1)) / (CHECK_CHANNELS - 1)));
  return [...set];
}

/** The values of channels `chans` of a case-shaped tensor, as an [outer, k, inner] tensor. */
function extract(a, c, chans) {
  const { outer, C, inner } = geometryOf(c);
  const k = chans.length;
  const out = new Float64Array(outer * k * inner);
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (const ch of chans) {
      const base = (o * C + ch) * inner;
      for (let j = 0; j < inner; j++) out[i++] = a[base + j];
    }
  }
  return out;
}

const pick = (a, chans) => (a ? chans.map((ch) => a[ch]) : null);

/**
 * Expected outputs of the case on the checked channels: { chans, main, mean?, invStd?, dweight?, dbias? }.
 * `main` is y (forward) or dx (backward) of the sub-tensor.
 */
export function reference(c, op, inputs) {
  const chans = checkChannels(c.C);
  const { outer, inner } = geometryOf(c);
  const subShape = [outer, chans.length, inner];
  const x = extract(inputs.x, c, chans);
  const common = { weight: pick(inputs.weight, chans), bias: pick(inputs.bias, chans), eps: EPS };
  if (op === 'inference') {
    const r = oracleForward(x, subShape, { ...common, training: false, runningMean: pick(inputs.runningMean, chans), runningVar: pick(inputs.runningVar, chans) });
    return { chans, main: r.y };
  }
  const f = oracleForward(x, subShape, { ...common, training: true });
  if (op === 'training') return { chans, main: f.y, mean: f.mean, invStd: f.invStd };
  const dy = extract(inputs.dy, c, chans);
  const b = oracleBackward(dy, x, subShape, { training: true, weight: common.weight, mean: f.mean, invStd: f.invStd });
  return { chans, main: b.dx, dweight: b.dweight, dbias: b.dbias };
}

/** max |a − e| / max |e| (NaN if a has a NaN or the lengths differ). */
function relErr(a, e) {
  if (!a || a.length !== e.length) return NaN;
  let err = 0, scale = 0;
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i] - e[i]);
    if (!(d <= err)) err = d; // NaN sticks
    const m = Math.abs(e[i]);
    if (m > scale) scale = m;
  }
  return err / (scale || 1);
}

/**
 * Compares a contender's outputs with the reference. `out` = { main (full case-shaped tensor),
 * mean?, invStd?, dweight?, dbias? (length C) }. Returns { err, correct, checked } where err is
 * the worst relative error over the outputs the contender produced.
 */
export function compare(c, ref, out) {
  const errs = { main: relErr(extract(out.main, c, ref.chans), ref.main) };
  for (const key of ['mean', 'invStd', 'dweight', 'dbias']) {
    if (out[key] && ref[key]) errs[key] = relErr(pick(out[key], ref.chans), ref[key]);
  }
  let err = 0;
  for (const v of Object.values(errs)) if (!(v <= err)) err = v;
  return { err, correct: err <= WRONG_ABOVE, checked: Object.keys(errs) };
}

/**
 * Everything a case gives its contenders: inputs, the reference, and for backward `saved` (the
 * saveMean/saveInvStd of our training forward on `engine`, which backward contenders that take
 * saved statistics get: ours, plain JS).
 */
export function caseData(c, op, engine) {
  const inputs = makeInputs(c, op);
  const ref = reference(c, op, inputs);
  let saved = null;
  if (op === 'backward') {
    const r = engine.forward(inputs.x, c.shape, { layout: c.layout, training: true, weight: inputs.weight, bias: inputs.bias, eps: EPS });
    saved = { saveMean: r.saveMean, saveInvStd: r.saveInvStd };
  }
  return { inputs, ref, saved };
}
