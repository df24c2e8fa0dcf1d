// `node bench/norms.mjs [--quick] [--ops layerNorm,groupNorm] [--contenders ours,ort-node]`
// (part of a full `npm run bench`): the rest of the normalization family — LayerNorm, RMSNorm
// (with and without a residual), GroupNorm (32 groups, both layouts, with and without SiLU) and
// InstanceNorm — on the shapes of issue 15, forward and backward.
//
// Contenders, each timed alone (median of timed batches after a warm-up), every output checked
// against the package's float64 oracle:
//   floor     the memory floor (bench/floor/floor.ts on the same engine memory): forward one
//             read-and-write pass per input (x -> y, and residual -> sum with a residual),
//             backward the floor's two-pass backward (dy, x -> dx)
//   ours      the package, zero-copy (tensors in wasm memory, outputs in place where allowed)
//   plain-js  the obvious float64 two-pass loops over Float32Arrays
//   tfjs-wasm TensorFlow.js, wasm backend (SIMD, 1 thread), each op composed from tf.moments
//   ort-node  ONNX Runtime for Node (native CPU, 1 thread), a one-node model per case
//   ort-web   ONNX Runtime Web (wasm, 1 thread), the same model
// ONNX Runtime runs inference only (no gradients without onnxruntime-training): its backward
// cells are '–'. Where ONNX has no operator for a case (RMSNorm before opset 23, a residual
// add), the contrib operators ORT ships are used (com.microsoft SimplifiedLayerNormalization,
// SkipLayerNormalization, SkipSimplifiedLayerNormalization), else a composed graph, and the cell
// says which. Writes bench/results/norms.{json,md}.
import os from 'node:os';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchDeps } from './deps.mjs';
import { buildFloor, FLOOR_WASM } from './floor/build.mjs';
import { mulberry32, gaussian } from './prng.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, ops: { type: 'string' }, contenders: { type: 'string' } },
});
ensureBenchDeps();
await buildFloor({ quiet: true });
const pkg = await import('../dist/index.js');
const onnxProto = (await import('onnx-proto')).default;

// ---------------------------------------------------------------------------------------------
// Cases (issue 15). dims are PyTorch's; a GroupNorm/InstanceNorm NHWC case is the same tensor
// with the channel axis last.
const EPS = 1e-5;
const CASES = [];
for (const op of ['layerNorm', 'rmsNorm']) {
  for (const shape of [[512, 768], [2048, 4096], [1, 77, 768]]) {
    for (const residual of [false, true]) CASES.push({ op, shape, D: shape[shape.length - 1], residual, quick: shape[0] === 512 });
  }
}
for (const dims of [[1, 320, 64, 64], [1, 640, 32, 32], [1, 1280, 16, 16]]) {
  for (const layout of ['NCHW', 'NHWC']) {
    for (const silu of [false, true]) CASES.push({ op: 'groupNorm', dims, layout, groups: 32, silu, quick: dims[1] === 640 });
  }
}
for (const layout of ['NCHW', 'NHWC']) CASES.push({ op: 'instanceNorm', dims: [1, 64, 128, 128], layout, quick: layout === 'NCHW' });
for (const c of CASES) {
  if (c.dims) c.shape = c.layout === 'NCHW' ? c.dims : [c.dims[0], ...c.dims.slice(2), c.dims[1]];
  c.size = c.shape.reduce((a, b) => a * b, 1);
  c.C = c.dims ? c.dims[1] : c.D;
  c.id = `${c.op} ${c.shape.join('x')}${c.layout ? ` ${c.layout}` : ''}${c.residual ? ' +residual' : ''}${c.silu ? ' +silu' : ''}`;
}

function inputsOf(c) {
  const g = gaussian(mulberry32(c.size ^ c.C));
  const vec = (n, scale, offset) => Float32Array.from({ length: n }, () => offset + scale * g());
  return {
    x: vec(c.size, 2, 0.5), dy: vec(c.size, 1, 0), residual: c.residual ? vec(c.size, 1, 0) : null,
    weight: vec(c.C, 0.2, 1), bias: vec(c.C, 0.2, 0),
  };
}

/** The float64 reference of a case's forward output (y), from the package's oracle. */
function reference(c, inp) {
  const o = { weight: inp.weight, eps: EPS };
  if (c.op === 'layerNorm') return pkg.oracleLayerNorm(inp.x, c.shape, { ...o, normalizedShape: [c.D], bias: inp.bias, residual: inp.residual }).y;
  if (c.op === 'rmsNorm') return pkg.oracleRmsNorm(inp.x, c.shape, { ...o, normalizedShape: [c.D], residual: inp.residual }).y;
  if (c.op === 'groupNorm') return pkg.oracleGroupNorm(inp.x, c.shape, { ...o, bias: inp.bias, groups: c.groups, layout: c.layout, activation: c.silu ? 'silu' : 'none' }).y;
  return pkg.oracleInstanceNorm(inp.x, c.shape, { ...o, bias: inp.bias, layout: c.layout }).y;
}

/** max |y − ref| / (1 + max |ref|): float32 results of an O(1)-scaled output sit near 1e-7. */
function check(y, ref) {
  let err = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) { err = Math.max(err, Math.abs(y[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
  const rel = Number.isNaN(err) ? Infinity : err / (1 + scale);
  return { relError: rel, ok: rel <= 1e-4 };
}

// ---------------------------------------------------------------------------------------------
// Contenders: setup(c, inp, engine) -> { forward, backward?, output(), note? } or { unsupported }.

const floor = {
  id: 'floor',
  async setup(c, inp, engine) {
    const bytes = readFileSync(FLOOR_WASM);
    const { instance } = await WebAssembly.instantiate(bytes, { env: { memory: engine.kernels.memory, abort() { throw new Error('floor: abort'); } } });
    const k = instance.exports, n = c.size;
    const t = [inp.x, inp.dy, null, null].map((v) => (v ? engine.tensor(v) : engine.tensor(n)));
    const r = c.residual ? engine.tensor(inp.residual) : null, s = c.residual ? engine.tensor(n) : null;
    const [x, dy, y, dx] = t.map((u) => u.byteOffset);
    return {
      forward: () => { k.inference(x, y, n, 1.25, 0.5); if (r) k.inference(r.byteOffset, s.byteOffset, n, 1, 0); },
      backward: () => { k.backward(dy, x, dx, n, 1.25); },
      output: () => null,
    };
  },
};

const ours = {
  id: 'ours',
  async setup(c, inp, engine) {
    // Zero-copy, as the batch-norm bench's: every array lives in the engine's memory, every output
    // (y, dx, the sum, the saved statistics, the parameter gradients) has a destination.
    const x = engine.tensor(inp.x), dy = engine.tensor(inp.dy), y = engine.tensor(c.size), dx = engine.tensor(c.size);
    const res = c.residual ? engine.tensor(inp.residual) : null, sum = c.residual ? engine.tensor(c.size) : null;
    const rows = c.op === 'layerNorm' || c.op === 'rmsNorm';
    const params = rows ? c.D : c.C, stats = rows ? c.size / c.D : c.shape[0] * (c.op === 'groupNorm' ? c.groups : c.C);
    const wT = engine.tensor(inp.weight), bT = inp.bias ? engine.tensor(inp.bias) : null;
    const sm = engine.tensor(stats), si = engine.tensor(stats), dwT = engine.tensor(params), dbT = engine.tensor(params);
    // Views are read at each call: a call may grow the memory, detaching earlier views.
    const w = () => wT.data, b = () => bT?.data;
    const outs = () => ({ saveMeanOut: sm.data, saveInvStdOut: si.data });
    const resOpts = () => (res ? { residual: res.data, sumOut: sum.data } : {});
    const fw = {
      layerNorm: () => pkg.layerNorm(engine, x.data, c.shape, { normalizedShape: [c.D], weight: w(), bias: b(), eps: EPS, out: y.data, ...resOpts(), ...outs() }),
      rmsNorm: () => pkg.rmsNorm(engine, x.data, c.shape, { normalizedShape: [c.D], weight: w(), eps: EPS, out: y.data, ...resOpts(), saveInvRmsOut: si.data }),
      groupNorm: () => pkg.groupNorm(engine, x.data, c.shape, {
        groups: c.groups, layout: c.layout, weight: w(), bias: b(), eps: EPS, activation: c.silu ? 'silu' : 'none', out: y.data, ...outs(),
      }),
      instanceNorm: () => pkg.instanceNorm(engine, x.data, c.shape, { layout: c.layout, weight: w(), bias: b(), eps: EPS, out: y.data, ...outs() }),
    }[c.op];
    fw();
    const src = () => (c.residual ? sum.data : x.data);
    const grads = () => ({ dweightOut: dwT.data, dbiasOut: dbT.data });
    const bw = {
      layerNorm: () => pkg.layerNormBackward(engine, dy.data, src(), c.shape, {
        normalizedShape: [c.D], weight: w(), saveMean: sm.data, saveInvStd: si.data, out: dx.data, ...grads(),
      }),
      rmsNorm: () => pkg.rmsNormBackward(engine, dy.data, src(), c.shape, { normalizedShape: [c.D], weight: w(), saveInvRms: si.data, out: dx.data, dweightOut: dwT.data }),
      groupNorm: () => pkg.groupNormBackward(engine, dy.data, x.data, c.shape, {
        groups: c.groups, layout: c.layout, weight: w(), bias: b(), saveMean: sm.data, saveInvStd: si.data, activation: c.silu ? 'silu' : 'none', out: dx.data, ...grads(),
      }),
      instanceNorm: () => pkg.instanceNormBackward(engine, dy.data, x.data, c.shape, {
        layout: c.layout, weight: w(), saveMean: sm.data, saveInvStd: si.data, out: dx.data, ...grads(),
      }),
    }[c.op];
    return { forward: fw, backward: bw, output: () => y.data };
  },
};

/** Float64 two-pass loops: what a user writes without a library. */
const plainJs = {
  id: 'plain-js',
  async setup(c, inp) {
    const y = new Float32Array(c.size), sum = c.residual ? new Float32Array(c.size) : null;
    const { weight: w, bias: b } = inp;
    // Every op as: groups of values (rows, (n, g) groups, (n, c) instances), each with the
    // channel of each value for the affine.
    const N = c.dims ? c.dims[0] : 1, C = c.C, S = c.dims ? c.size / (N * C) : 0;
    const last = c.layout === 'NHWC';
    const forward = () => {
      let x = inp.x;
      if (sum) { for (let i = 0; i < c.size; i++) sum[i] = x[i] + inp.residual[i]; x = sum; }
      if (c.op === 'layerNorm' || c.op === 'rmsNorm') {
        const D = c.D, rms = c.op === 'rmsNorm';
        for (let r = 0; r < c.size / D; r++) {
          const o = r * D;
          let m = 0; for (let i = 0; i < D; i++) m += x[o + i]; m /= D;
          let v = 0; for (let i = 0; i < D; i++) { const d = rms ? x[o + i] : x[o + i] - m; v += d * d; }
          const s = 1 / Math.sqrt(v / D + EPS);
          for (let i = 0; i < D; i++) y[o + i] = ((rms ? x[o + i] : x[o + i] - m) * s) * w[i] + (rms ? 0 : b[i]);
        }
        return;
      }
      const G = c.op === 'groupNorm' ? c.groups : C, per = C / G;
      const idx = (n, ch, s) => (last ? (n * S + s) * C + ch : (n * C + ch) * S + s);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < G; g++) {
          let m = 0; for (let ch = g * per; ch < (g + 1) * per; ch++) for (let s = 0; s < S; s++) m += x[idx(n, ch, s)];
          m /= per * S;
          let v = 0; for (let ch = g * per; ch < (g + 1) * per; ch++) for (let s = 0; s < S; s++) { const d = x[idx(n, ch, s)] - m; v += d * d; }
          const inv = 1 / Math.sqrt(v / (per * S) + EPS);
          for (let ch = g * per; ch < (g + 1) * per; ch++) {
            for (let s = 0; s < S; s++) {
              const i = idx(n, ch, s), z = (x[i] - m) * inv * w[ch] + b[ch];
              y[i] = c.silu ? z / (1 + Math.exp(-z)) : z;
            }
          }
        }
      }
    };
    return { forward, output: () => y };
  },
};

/**
 * TensorFlow.js 4.22, wasm backend (SIMD, 1 thread): each op composed from tf.moments (biased
 * variance) and broadcasting arithmetic, as a tfjs user writes it; x (and the residual) are
 * tf.Tensors created once, the output read back with dataSync() (tfjs has no in-place output).
 */
let tfReady = null;
const tfjs = {
  id: 'tfjs-wasm',
  async setup(c, inp) {
    tfReady ??= (async () => {
      const tf = await import('@tensorflow/tfjs-core');
      await import('@tensorflow/tfjs-backend-wasm');
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend failed to initialise');
      await tf.ready();
      return tf;
    })();
    const tf = await tfReady;
    const x = tf.tensor(inp.x, c.shape), r = c.residual ? tf.tensor(inp.residual, c.shape) : null;
    const rank = c.shape.length, last = c.layout === 'NHWC', C = c.C;
    // Parameters shaped to broadcast over the channel axis (last, or 1 in NCHW).
    const pshape = c.dims && !last ? [1, C, ...Array(rank - 2).fill(1)] : [C];
    const w = tf.tensor(inp.weight, pshape), b = tf.tensor(inp.bias, pshape);
    const normalize = (v, mean, variance) => tf.mul(tf.sub(v, mean), tf.rsqrt(tf.add(variance, EPS)));
    const op = {
      layerNorm: (v) => { const m = tf.moments(v, -1, true); return tf.add(tf.mul(normalize(v, m.mean, m.variance), w), b); },
      rmsNorm: (v) => tf.mul(tf.mul(v, tf.rsqrt(tf.add(tf.mean(tf.square(v), -1, true), EPS))), w),
      groupNorm: (v) => {
        // Groups of C/G adjacent channels: [N, G, C/G·S] in NCHW, [N, S, G, C/G] in NHWC.
        const N = c.shape[0], G = c.groups, S = c.size / (N * C);
        const g = tf.reshape(v, last ? [N, S, G, C / G] : [N, G, (C / G) * S]);
        const m = tf.moments(g, last ? [1, 3] : [2], true);
        const z = tf.add(tf.mul(tf.reshape(normalize(g, m.mean, m.variance), c.shape), w), b);
        return c.silu ? tf.mul(z, tf.sigmoid(z)) : z;
      },
      instanceNorm: (v) => {
        const axes = last ? Array.from({ length: rank - 2 }, (_, i) => i + 1) : Array.from({ length: rank - 2 }, (_, i) => i + 2);
        const m = tf.moments(v, axes, true);
        return tf.add(tf.mul(normalize(v, m.mean, m.variance), w), b);
      },
    }[c.op];
    let yData = null;
    const forward = () => {
      const y = tf.tidy(() => op(r ? tf.add(x, r) : x));
      yData = y.dataSync();
      y.dispose();
    };
    return { forward, output: () => yData, note: 'composed from tf.moments', teardown: () => tf.dispose([x, r, w, b].filter(Boolean)) };
  },
};

// ONNX models. --------------------------------------------------------------------------------
const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const A = onnx.AttributeProto.AttributeType;
const info = (name, dims) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
const init = (name, values) => ({ name, dims: [values.length], dataType: FLOAT, rawData: new Uint8Array(Float32Array.from(values).buffer) });
const attr = { f: (name, f) => ({ name, f, type: A.FLOAT }), i: (name, i) => ({ name, i, type: A.INT }), ints: (name, ints) => ({ name, ints, type: A.INTS }) };

/** The case as a one-node (or few-node) ONNX model: { bytes, note, inputs }. */
function onnxModel(c, inp, variant) {
  const nodes = [], inits = [], opsets = [{ domain: '', version: 21 }];
  const inputs = [info('X', c.shape)], feeds = { X: inp.x };
  let note = null;
  if (c.op === 'layerNorm' || c.op === 'rmsNorm') {
    const rms = c.op === 'rmsNorm';
    inits.push(init('W', inp.weight));
    if (!rms) inits.push(init('B', inp.bias));
    if (c.residual) {
      // Contrib SkipLayerNormalization / SkipSimplifiedLayerNormalization: input, skip, gamma(, beta) -> output, ..., input + skip.
      opsets.push({ domain: 'com.microsoft', version: 1 });
      inputs.push(info('R', c.shape)); feeds.R = inp.residual;
      nodes.push({ opType: rms ? 'SkipSimplifiedLayerNormalization' : 'SkipLayerNormalization', domain: 'com.microsoft', input: rms ? ['X', 'R', 'W'] : ['X', 'R', 'W', 'B'], output: ['Y', '', '', 'S'], attribute: [attr.f('epsilon', EPS)] });
      note = `com.microsoft ${nodes[0].opType}`;
    } else if (rms && variant === 'contrib') {
      opsets.push({ domain: 'com.microsoft', version: 1 });
      nodes.push({ opType: 'SimplifiedLayerNormalization', input: ['X', 'W'], output: ['Y'], attribute: [attr.i('axis', -1), attr.f('epsilon', EPS)] });
      note = 'SimplifiedLayerNormalization';
    } else if (rms) {
      opsets[0].version = 23;
      nodes.push({ opType: 'RMSNormalization', input: ['X', 'W'], output: ['Y'], attribute: [attr.i('axis', -1), attr.f('epsilon', EPS)] });
    } else {
      nodes.push({ opType: 'LayerNormalization', input: ['X', 'W', 'B'], output: ['Y'], attribute: [attr.i('axis', -1), attr.f('epsilon', EPS)] });
    }
  } else {
    // Channels-first operators: NHWC goes through Transposes, as an ONNX user's graph does.
    const rank = c.shape.length, last = c.layout === 'NHWC';
    const toFirst = [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];
    const toLast = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];
    let at = 'X';
    if (last) { nodes.push({ opType: 'Transpose', input: ['X'], output: ['Xt'], attribute: [attr.ints('perm', toFirst)] }); at = 'Xt'; }
    inits.push(init('W', inp.weight), init('B', inp.bias));
    if (c.op === 'groupNorm') {
      nodes.push({ opType: 'GroupNormalization', input: [at, 'W', 'B'], output: ['Z'], attribute: [attr.i('num_groups', c.groups), attr.f('epsilon', EPS)] });
    } else {
      nodes.push({ opType: 'InstanceNormalization', input: [at, 'W', 'B'], output: ['Z'], attribute: [attr.f('epsilon', EPS)] });
    }
    at = 'Z';
    if (c.silu) { nodes.push({ opType: 'Sigmoid', input: ['Z'], output: ['Sg'] }, { opType: 'Mul', input: ['Z', 'Sg'], output: ['Zs'] }); at = 'Zs'; }
    nodes.push(last ? { opType: 'Transpose', input: [at], output: ['Y'], attribute: [attr.ints('perm', toLast)] } : { opType: 'Identity', input: [at], output: ['Y'] });
    note = [last ? 'Transpose' : null, c.op === 'groupNorm' ? 'GroupNormalization (opset 21)' : 'InstanceNormalization', c.silu ? 'Sigmoid, Mul' : null, last ? 'Transpose' : null].filter(Boolean).join(' → ');
  }
  const outputs = [info('Y', c.shape), ...(nodes.some((n) => n.output.includes('S')) ? [info('S', c.shape)] : [])];
  const model = { irVersion: 10, opsetImport: opsets, producerName: 'wasm-batchnorm bench', graph: { name: c.op, node: nodes, initializer: inits, input: inputs, output: outputs } };
  return { bytes: onnx.ModelProto.encode(onnx.ModelProto.fromObject(model)).finish(), note, feeds };
}

function ortContender(id, getOrt, options) {
  return {
    id,
    async setup(c, inp) {
      const ort = await getOrt();
      let last = null, failure = null;
      for (const variant of c.op === 'rmsNorm' && !c.residual ? ['standard', 'contrib'] : ['standard']) {
        const m = onnxModel(c, inp, variant);
        try {
          const session = await ort.InferenceSession.create(m.bytes, options);
          const feeds = Object.fromEntries(Object.entries(m.feeds).map(([k, v]) => [k, new ort.Tensor('float32', v, c.shape)]));
          const forward = async () => { last = (await session.run(feeds)).Y.data; };
          return { forward, output: () => last, note: m.note, teardown: () => session.release() };
        } catch (error) {
          failure = `${m.note ?? c.op}: ${String(error.message ?? error).split('\n')[0].slice(0, 120)}`;
        }
      }
      return { unsupported: failure };
    },
  };
}

const CONTENDERS = [
  floor, ours, plainJs, tfjs,
  ortContender('ort-node', async () => { const o = (await import('onnxruntime-node')).default; o.env.logLevel = 'error'; return o; },
    { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' }),
  ortContender('ort-web', async () => { const o = await import('onnxruntime-web'); o.env.wasm.numThreads = 1; o.env.wasm.proxy = false; o.env.logLevel = 'error'; return o; },
    { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }),
];

// ---------------------------------------------------------------------------------------------
async function time(fn, budgetMs) {
  for (let i = 0; i < 3; i++) await fn(); // warm-up
  const t0 = performance.now();
  await fn();
  const once = Math.max(performance.now() - t0, 1e-3);
  const reps = Math.max(1, Math.min(1000, Math.round(2 / once))); // batches of ~2 ms
  const samples = [];
  const deadline = performance.now() + budgetMs;
  while (samples.length < 7 || (performance.now() < deadline && samples.length < 41)) {
    const s = performance.now();
    for (let i = 0; i < reps; i++) await fn();
    samples.push((performance.now() - s) / reps);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

const wanted = (list, id) => !list || list.split(',').includes(id);
const cases = CASES.filter((c) => (!args.quick || c.quick) && wanted(args.ops, c.op));
const budget = args.quick ? 150 : 400;
const results = [];
for (const c of cases) {
  const inp = inputsOf(c);
  const ref = reference(c, inp);
  const engine = await pkg.createEngine({ build: 'simd', threads: 1 }); // one thread, as ORT here: bench/threads.mjs measures threads
  const row = { id: c.id, op: c.op, shape: c.shape, layout: c.layout ?? null, residual: !!c.residual, silu: !!c.silu, contenders: {} };
  for (const k of CONTENDERS) {
    if (k.id !== 'floor' && !wanted(args.contenders, k.id)) continue;
    let s;
    try { s = await k.setup(c, inp, engine); } catch (error) { s = { unsupported: String(error.message ?? error).slice(0, 160) }; }
    if (s.unsupported) { row.contenders[k.id] = { unsupported: s.unsupported }; continue; }
    const r = { forwardMs: await time(s.forward, budget), note: s.note ?? null };
    const out = s.output();
    if (out) r.check = check(out, ref);
    if (s.backward) r.backwardMs = await time(s.backward, budget);
    if (s.teardown) await s.teardown();
    row.contenders[k.id] = r;
  }
  const fl = row.contenders.floor;
  for (const r of Object.values(row.contenders)) {
    if (r.forwardMs) r.forwardToFloor = r.forwardMs / fl.forwardMs;
    if (r.backwardMs) r.backwardToFloor = r.backwardMs / fl.backwardMs;
  }
  results.push(row);
  const o = row.contenders.ours;
  const vs = (id) => (row.contenders[id]?.forwardMs ? `${(row.contenders[id].forwardMs / o.forwardMs).toFixed(1)}×` : '–');
  console.log(`${c.id.padEnd(42)} fwd ${o.forwardToFloor.toFixed(2)}× floor, bwd ${o.backwardToFloor?.toFixed(2) ?? '–'}× floor; speed-up vs plain JS ${vs('plain-js')}, tfjs ${vs('tfjs-wasm')}, ORT Node ${vs('ort-node')}, ORT Web ${vs('ort-web')}; check ${o.check.ok ? 'ok' : `FAILED ${o.check.relError}`}`);
}

// Report. -------------------------------------------------------------------------------------
const fmt = (v, d = 2) => (v === undefined || v === null ? '–' : v.toFixed(d));
const lines = [
  '| case | ours fwd / floor | ours bwd / floor | ours fwd ms | vs plain JS | vs tfjs wasm | vs ORT Node | vs ORT Web | checks |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---|',
];
for (const r of results) {
  const o = r.contenders.ours, sp = (id) => (r.contenders[id]?.forwardMs ? `${fmt(r.contenders[id].forwardMs / o.forwardMs, 1)}×` : '–');
  const checks = Object.entries(r.contenders).filter(([, v]) => v.check).map(([id, v]) => `${id} ${v.check.ok ? 'ok' : 'WRONG'}`).join(', ');
  lines.push(`| ${r.id} | ${fmt(o.forwardToFloor)} | ${fmt(o.backwardToFloor)} | ${fmt(o.forwardMs, 3)} | ${sp('plain-js')} | ${sp('tfjs-wasm')} | ${sp('ort-node')} | ${sp('ort-web')} | ${checks} |`);
}
const unsupported = results.flatMap((r) => Object.entries(r.contenders).filter(([, v]) => v.unsupported).map(([id, v]) => `- ${r.id}, ${id}: ${v.unsupported}`));
const notes = [...new Set(results.flatMap((r) => Object.entries(r.contenders).filter(([, v]) => v.note).map(([id, v]) => `- ${id}, ${r.op}${r.residual ? ' +residual' : ''}: ${v.note}`)))];
const meta = { date: new Date().toISOString(), node: process.version, v8: process.versions.v8, cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadavg: os.loadavg() };
mkdirSync(join(root, 'bench/results'), { recursive: true });
const name = args.quick ? 'norms-quick' : 'norms';
writeFileSync(join(root, `bench/results/${name}.json`), `${JSON.stringify({ meta, results }, null, 2)}\n`);
writeFileSync(join(root, `bench/results/${name}.md`), `# The normalization family (bench/norms.mjs)\n\n${meta.cpu}, Node ${meta.node} (V8 ${meta.v8}), ${meta.date}, load ${meta.loadavg.map((v) => v.toFixed(1)).join(' ')}; one run. Ratios of median times; "vs X" is X's time over ours (forward).\n\n${lines.join('\n')}\n\nPeers' graphs:\n${notes.join('\n') || '- the standard operators'}\n\nNot run:\n${unsupported.join('\n') || '- none'}\n`);
console.log(`\n${lines.join('\n')}\n\nwrote bench/results/${name}.{json,md}`);
