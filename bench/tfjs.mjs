// A TensorFlow.js training step with our batch-norm layer (wasm-batchnorm/tfjs batchNormalization)
// against tfjs's own (tf.layers.batchNormalization), on tfjs's cpu and wasm backends.
//
//   node bench/tfjs.mjs [--reps N] [--backends cpu,wasm] [--models conv,pointwise,dense]
//
// Models (tf.sequential, channels-last, so tfjs's own layer is correct too; it is not on NCHW):
//   conv       conv2d(F, 3x3, same) -> BN -> relu -> globalAveragePooling2d -> dense(10)
//              (cpu only: tfjs-backend-wasm has no Conv2DBackpropFilter kernel, so no conv training)
//   pointwise  dense(F) over the channels of an image (a 1x1 convolution) -> BN -> relu ->
//              globalAveragePooling2d -> dense(10)
//   dense      dense(C) -> BN -> relu -> dense(10)
// Step: model.trainOnBatch(x, y) (SGD, mean squared error), which runs forward, backward and the
// update and reads the loss back. The two models start from the same weights; after the warm-up
// they are timed alternately (ours, tfjs, ours, ...) so load from other processes hits both
// alike; median per model; ratio = ours / tfjs (below 1: ours faster). Check: the losses of the
// two models over every step agree within LOSS_TOL (relative), so both train the same network.
// Writes bench/results/tfjs.{json,md}. Peers: tfjs-core, -layers, -backend-cpu, -backend-wasm from
// bench/node_modules (one tfjs-core for all of them; bench/deps.mjs installs them first). The
// gradients come with tfjs-layers (its Node entry registers them; tfjs-core's registers none).
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchDeps } from './deps.mjs';
import { createEngine, distUrl } from './package-under-test.mjs';
import { mulberry32, gaussian } from './prng.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '7' },
    backends: { type: 'string', default: 'cpu,wasm' },
    models: { type: 'string', default: 'conv,pointwise,dense' },
  },
});
const REPS = Number(args.reps);
const WARMUP = 2;
const LOSS_TOL = 1e-3;

/** The cases: model kind, batch shape (input), width of the normalized layer. */
const CASES = [
  { model: 'conv', input: [8, 28, 28, 3], units: 16 },   // MNIST-sized image, 16 channels
  { model: 'conv', input: [16, 32, 32, 3], units: 32 },  // CIFAR-sized, 32 channels
  { model: 'pointwise', input: [8, 28, 28, 3], units: 16 },
  { model: 'pointwise', input: [16, 32, 32, 3], units: 32 },
  { model: 'pointwise', input: [8, 56, 56, 3], units: 64 }, // BN on 1.6M values
  { model: 'dense', input: [256, 512], units: 1024 },    // BatchNorm1d [256, 1024]
].filter((c) => args.models.split(',').includes(c.model));
/** Kernels a backend lacks for a model's training step. */
const UNSUPPORTED = { 'wasm conv': 'tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter kernel: conv2d cannot be trained on it' };

ensureBenchDeps();
const tf = await import('@tensorflow/tfjs-core');
const tfl = await import('@tensorflow/tfjs-layers');
await import('@tensorflow/tfjs-backend-cpu');
const wasmBackend = await import('@tensorflow/tfjs-backend-wasm');
const { useTfjs, batchNormalization } = await import(distUrl('tfjs/index.js'));
const engine = await createEngine({ threads: 1 }); // one thread, as every peer here: bench/threads.mjs measures threads
useTfjs({ ...tf, layers: tfl.layers }, engine);

function build(c, bn) {
  const { layers } = tfl;
  const inputShape = c.input.slice(1);
  const body = {
    conv: [layers.conv2d({ filters: c.units, kernelSize: 3, padding: 'same', inputShape }), bn, layers.reLU(), layers.globalAveragePooling2d({})],
    pointwise: [layers.dense({ units: c.units, inputShape }), bn, layers.reLU(), layers.globalAveragePooling2d({})],
    dense: [layers.dense({ units: c.units, inputShape }), bn, layers.reLU()],
  }[c.model];
  const model = tfl.sequential({ layers: [...body, layers.dense({ units: 10 })] });
  model.compile({ optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError' });
  return model;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const seconds = () => performance.now() / 1e3;

const bnShape = (c) => [...c.input.slice(0, -1), c.units];

async function runCase(backend, c) {
  const normal = gaussian(mulberry32(0x7f + c.units));
  const n = c.input.reduce((p, d) => p * d, 1);
  const x = tf.tensor(Float32Array.from({ length: n }, normal), c.input);
  const y = tf.tensor(Float32Array.from({ length: c.input[0] * 10 }, normal), [c.input[0], 10]);
  const ours = build(c, batchNormalization(engine, {}));
  const theirs = build(c, tfl.layers.batchNormalization({}));
  theirs.setWeights(ours.getWeights());
  const models = { ours, tfjs: theirs };
  const times = { ours: [], tfjs: [] }, losses = { ours: [], tfjs: [] };
  for (let rep = 0; rep < WARMUP + REPS; rep++) {
    for (const key of ['ours', 'tfjs']) {
      const t0 = seconds();
      const loss = await models[key].trainOnBatch(x, y);
      const dt = seconds() - t0;
      losses[key].push(Number(loss));
      if (rep >= WARMUP) times[key].push(dt * 1e3);
    }
  }
  const lossErr = Math.max(...losses.ours.map((l, i) => Math.abs(l - losses.tfjs[i]) / Math.max(Math.abs(losses.tfjs[i]), 1e-12)));
  tf.dispose([x, y]);
  ours.dispose();
  theirs.dispose();
  const oursMs = median(times.ours), tfjsMs = median(times.tfjs);
  return {
    backend, model: c.model, input: c.input, units: c.units,
    bnShape: bnShape(c),
    oursMs, tfjsMs, ratio: oursMs / tfjsMs, samples: REPS, times, lossRelDiff: lossErr, lossesMatch: lossErr <= LOSS_TOL,
  };
}

const t0 = seconds();
const rows = [];
for (const backend of args.backends.split(',')) {
  if (backend === 'wasm') tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false); // single thread, as in the other benches
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs: backend ${backend} failed to initialise`);
  await tf.ready();
  for (const c of CASES) {
    const unsupported = UNSUPPORTED[`${backend} ${c.model}`];
    if (unsupported) {
      rows.push({ backend, model: c.model, input: c.input, units: c.units, bnShape: bnShape(c), unsupported });
      console.log(`${backend.padEnd(4)} ${c.model.padEnd(9)} unsupported: ${unsupported}`);
      continue;
    }
    const r = await runCase(backend, c);
    rows.push(r);
    console.log(`${backend.padEnd(4)} ${c.model.padEnd(9)} BN on [${r.bnShape.join(', ')}]: ours ${r.oursMs.toFixed(1)} ms, tfjs ${r.tfjsMs.toFixed(1)} ms, ratio ${r.ratio.toFixed(2)} (losses ${r.lossesMatch ? 'match' : `DIFFER ${r.lossRelDiff.toExponential(1)}`})`);
  }
}

let commit = null;
try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { /* not a checkout */ }
const meta = {
  date: new Date().toISOString(), cpu: os.cpus()[0]?.model?.trim(), cores: os.cpus().length, node: process.version, v8: process.versions.v8,
  loadavg: os.loadavg(), commit, tfjs: tf.version_core, tfjsWasm: wasmBackend.version_wasm, reps: REPS, warmup: WARMUP, lossTolerance: LOSS_TOL,
  wallSeconds: seconds() - t0,
};
const md = [
  '# TensorFlow.js training step: our batchNormalization layer vs tfjs\'s own',
  '',
  `${meta.cpu}, Node ${meta.node}, tfjs ${meta.tfjs} (wasm backend single-threaded), ${meta.date.slice(0, 10)}, build ${commit ?? '?'}, load average ${meta.loadavg.map((l) => l.toFixed(1)).join('/')}. `
    + `model.trainOnBatch (SGD, MSE), median of ${REPS} alternating steps after ${WARMUP} warm-up steps; ratio = ours / tfjs (lower is better). Generated by bench/tfjs.mjs.`,
  '',
  '| backend | model | BN input | ours ms | tfjs ms | ratio | losses |',
  '|---|---|---|---:|---:|---:|---|',
  ...rows.map((r) => (r.unsupported
    ? `| ${r.backend} | ${r.model} | [${r.bnShape.join(', ')}] | n/a | n/a | n/a | ${r.unsupported} |`
    : `| ${r.backend} | ${r.model} | [${r.bnShape.join(', ')}] | ${r.oursMs.toFixed(1)} | ${r.tfjsMs.toFixed(1)} | ${r.ratio.toFixed(2)} | ${r.lossesMatch ? 'match' : '**differ**'} (${r.lossRelDiff.toExponential(0)}) |`)),
  '',
].join('\n');
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/tfjs.json'), `${JSON.stringify({ meta, rows }, null, 1)}\n`);
writeFileSync(join(ROOT, 'bench/results/tfjs.md'), md);
console.log(`\n${md}\nwrote bench/results/tfjs.json, bench/results/tfjs.md (${meta.wallSeconds.toFixed(0)} s)`);
if (rows.some((r) => !r.unsupported && !r.lossesMatch)) process.exitCode = 1;
