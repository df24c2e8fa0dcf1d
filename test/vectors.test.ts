// Peer test vectors (../shared/vectors/, see its README.md): every JSON case from the ONNX
// backend node tests / onnxruntime, TensorFlow.js tfjs-core and PyTorch, run through every
// release build (the build table; one this JavaScript engine rejects is skipped) and held to the vector's own tolerance. One test per (build, vector id).
//
// Mapping (details in test/helpers/vectors.ts):
// - inference: forward(training: false) with runningMean/runningVar = the given mean/var,
//   weight = scale, bias = B/offset, eps from the attributes as given (ONNX: the float32 value).
//   ONNX/PyTorch channel_axis 1 -> NCHW; tfjs (last axis, [C] params) -> NHWC on x's own shape;
//   a 1-D ONNX X of size N is [N, 1] (C = 1); a 1-D tfjs x is [1, C]. Full-shape/broadcast tfjs
//   parameters (none in the current set) run as [1, numel] NHWC, one "channel" per element.
// - training (ONNX training_mode=1, onnxruntime BatchNormInternal): forward(training: true),
//   momentum = 1 - m_onnx (ours weights the NEW batch), unbiasedRunningVar: false (biased).
//   Y, running_mean, running_var, and saved_mean / saved_inv_std (= our saveMean / saveInvStd).
// - backward_inference (tfjs gradients): backward(training: false) with saveMean = mean and
//   saveInvStd = 1/sqrt(var + eps) computed in float64. dx, dscale (our dweight), doffset (our
//   dbias) come straight from the engine. tfjs's extra dmean / dvariance outputs are not engine
//   outputs (our backward treats mean/invStd as constants); rather than skip them we check the
//   closed forms tfjs uses, derived from the engine's results:
//     dmean = sum(-dy * scale * invStd) = -sum(dx),
//     dvariance = sum(-0.5 * dy * scale * (x - mean) * invStd^3) = -0.5 * scale * invStd^2 * dweight.
// - error (PyTorch one value per channel in training): forward(training: true) must throw our
//   ShapeError saying 'more than 1 value per channel', leaving the running stats untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, createEngine, ShapeError, type Engine } from '../src/index.js';
import { BUILD_NAMES } from '../src/wasm/builds.js';
import { skipBuild } from './helpers/engines.js';
import {
  VECTOR_FOLDERS, compareOutput, listVectorFiles, loadVectorFile, mapVector, toleranceFor,
  vectorsRootExists, type EngineCase, type LoadedVector, type Vector,
} from './helpers/vectors.js';
import { channelOf as channelOfShape } from './helpers/numeric.js';

const VECTORS_ROOT = new URL('../../shared/vectors/', import.meta.url);
const ROOT_EXISTS = vectorsRootExists(VECTORS_ROOT);

if (!ROOT_EXISTS) {
  const reason = `peer test vectors not found at ${VECTORS_ROOT.pathname} (expected ../shared/vectors next to the repository)`;
  if (process.env.CI === 'true') {
    throw new Error(`${reason}: CI=true, so a missing vectors folder is a failure, not a skip`);
  }
  console.warn(`\n*** SKIPPING test/vectors.test.ts: ${reason}. These tests only run with the shared vectors checked out. ***\n`);
}

const BUILDS = BUILD_NAMES;

/** Discovered at collection time (never a hard-coded list). */
const FOLDERS = ROOT_EXISTS
  ? VECTOR_FOLDERS.map((folder) => ({
    folder,
    loaded: listVectorFiles(VECTORS_ROOT, folder).map((name) => loadVectorFile(VECTORS_ROOT, folder, name)),
  }))
  : [];
const ALL: LoadedVector[] = FOLDERS.flatMap((f) => f.loaded);

// ---------------------------------------------------------------------------------------
// Running one vector.

type Outputs = Record<string, ArrayLike<number>>;


function runInference(engine: Engine, c: EngineCase): Outputs {
  let x = c.x;
  for (let t = 0; t < c.times; t++) {
    const { y } = engine.forward(c.feedBack ? x : c.x, c.shape, {
      layout: c.layout, training: false, weight: c.weight(), bias: c.bias(),
      runningMean: c.mean(), runningVar: c.variance(), eps: c.eps,
    });
    x = y;
  }
  return { Y: x, y: x };
}

function runTraining(engine: Engine, c: EngineCase): Outputs {
  const runningMean = c.mean();
  const runningVar = c.variance();
  const weight = c.weight();
  const bias = c.bias();
  let x = c.x;
  let last: ReturnType<Engine['forward']> | null = null;
  for (let t = 0; t < c.times; t++) {
    last = engine.forward(c.feedBack ? x : c.x, c.shape, {
      layout: c.layout, training: true, weight, bias, runningMean, runningVar,
      momentum: c.momentum, unbiasedRunningVar: c.unbiasedRunningVar, eps: c.eps,
    });
    x = last.y;
  }
  const out: Outputs = { Y: last!.y, y: last!.y, saved_mean: last!.saveMean, save_mean: last!.saveMean,
    saved_inv_std: last!.saveInvStd, save_invstd: last!.saveInvStd };
  if (runningMean && runningVar) Object.assign(out, { running_mean: runningMean, running_var: runningVar });
  return out;
}

function runBackwardInference(engine: Engine, c: EngineCase): Outputs {
  const mean = c.mean()!;
  const variance = c.variance()!;
  const weight = c.weight();
  // invStd in float64 from the float32 variance the engine would hold, then stored as float32.
  const invStd64 = Float64Array.from(variance, (v) => 1 / Math.sqrt(v + c.eps));
  const saveInvStd = Float32Array.from(invStd64);
  const { dx, dweight, dbias } = engine.backward(c.dy!, c.x, c.shape, {
    layout: c.layout, training: false, weight, saveMean: mean, saveInvStd,
  });
  // tfjs's dmean / dvariance in closed form from the engine's dx and dweight (see the header).
  const channels = mean.length;
  const dmeanPer = new Float64Array(channels);
  if (c.elementwise) dx.forEach((v, i) => { dmeanPer[i] = -v; });
  else {
    const channelOf = channelOfShape(c.shape, c.layout); // channel of each flat index of the engine's view
    dx.forEach((v, i) => { dmeanPer[channelOf(i)] -= v; });
  }
  const dvarPer = Float64Array.from(dweight, (g, k) => -0.5 * (weight ? weight[k] : 1) * invStd64[k] ** 2 * g);
  if (c.elementwise) {
    const reduce = c.reduceToParam!;
    return {
      dx,
      dscale: reduce(dweight, 'weight'), dweight: reduce(dweight, 'weight'),
      doffset: reduce(dbias, 'bias'), dbias: reduce(dbias, 'bias'), dB: reduce(dbias, 'bias'),
      dmean: reduce(dmeanPer, 'mean'), dvariance: reduce(dvarPer, 'var'),
    };
  }
  return { dx, dscale: dweight, dweight, doffset: dbias, dbias, dB: dbias, dmean: dmeanPer, dvariance: dvarPer };
}

/** Compares every output the vector lists; an output we cannot produce is a failure, not a skip. */
function checkOutputs(v: Vector, actual: Outputs): void {
  const problems: string[] = [];
  for (const [name, spec] of Object.entries(v.outputs)) {
    const got = actual[name];
    if (!got) {
      problems.push(`${v.id} output ${name}: the ${v.kind} mapping produces no such output (have: ${Object.keys(actual).join(', ')})`);
      continue;
    }
    problems.push(...compareOutput(v.id, name, got, spec.data!, toleranceFor(v, name)));
  }
  expect(problems, `${v.id}: ${problems.length} problem(s):\n${problems.join('\n')}`).toEqual([]);
}

function runErrorCase(engine: Engine, v: Vector, c: EngineCase): void {
  expect(v.error!.message, `${v.id}: only the one-value-per-channel error is mapped`).toMatch(/more than 1 value per channel/);
  // Distinctive running stats, so any write (even of the "fresh" 0 / 1) would show.
  const C = c.layout === 'NCHW' ? c.shape[1] : c.shape[c.shape.length - 1];
  const runningMean = Float32Array.from({ length: C }, (_, k) => 0.25 * k - 1);
  const runningVar = Float32Array.from({ length: C }, (_, k) => 1 + 0.5 * k);
  const before = { mean: runningMean.slice(), var: runningVar.slice(), x: c.x.slice() };
  let thrown: unknown = null;
  try {
    engine.forward(c.x, c.shape, {
      layout: c.layout, training: true, weight: c.weight(), bias: c.bias(), runningMean, runningVar,
      momentum: c.momentum, eps: c.eps,
    });
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `${v.id}: forward(training: true) on shape [${c.shape}] must throw`).toBeInstanceOf(ShapeError);
  expect((thrown as Error).message, `${v.id}: error message`).toContain('more than 1 value per channel');
  expect(Array.from(runningMean), `${v.id}: runningMean must be unchanged`).toEqual(Array.from(before.mean));
  expect(Array.from(runningVar), `${v.id}: runningVar must be unchanged`).toEqual(Array.from(before.var));
  expect(Array.from(c.x), `${v.id}: x must be unchanged`).toEqual(Array.from(before.x));

  // The same through the layer (PyTorch's test uses a module in training mode): no state change.
  const layer = new BatchNorm(engine, C, { eps: c.eps, momentum: c.momentum, layout: c.layout });
  layer.runningMean!.set(runningMean);
  layer.runningVar!.set(runningVar);
  expect(() => layer.forward(c.x, c.shape), `${v.id}: BatchNorm.forward in training mode`).toThrow(ShapeError);
  expect(layer.numBatchesTracked, `${v.id}: numBatchesTracked`).toBe(0);
  expect(Array.from(layer.runningMean!), `${v.id}: layer runningMean unchanged`).toEqual(Array.from(before.mean));
  expect(Array.from(layer.runningVar!), `${v.id}: layer runningVar unchanged`).toEqual(Array.from(before.var));

  // README: eval mode with running stats accepts this shape.
  const { y } = engine.forward(c.x, c.shape, { layout: c.layout, training: false, runningMean, runningVar, eps: c.eps });
  expect(y.length, `${v.id}: eval forward with running stats`).toBe(c.x.length);
}

function runVector(engine: Engine, v: Vector, c: EngineCase): void {
  switch (v.kind) {
    case 'inference': return checkOutputs(v, runInference(engine, c));
    case 'training': return checkOutputs(v, runTraining(engine, c));
    case 'backward_inference': return checkOutputs(v, runBackwardInference(engine, c));
    case 'error': return runErrorCase(engine, v, c);
  }
}

// ---------------------------------------------------------------------------------------

(ROOT_EXISTS ? describe : describe.skip)('peer test vectors (../shared/vectors)', () => {
  describe('discovery', () => {
    for (const { folder, loaded } of FOLDERS) {
      it(`finds vectors in ${folder}/`, () => {
        expect(loaded.length, `no *.json in ${new URL(`${folder}/`, VECTORS_ROOT).pathname}`).toBeGreaterThan(0);
      });
    }
    it('vector ids are unique', () => {
      const ids = ALL.flatMap((l) => (l.vector ? [l.vector.id] : []));
      expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    });
  });

  for (const build of BUILDS) {
    describe(`${build} build`, () => {
      if (skipBuild(build)) return;
      let engine: Engine;
      beforeAll(async () => {
        engine = await createEngine({ build });
        expect(engine.build).toBe(build);
      });
      afterAll(() => {
        // Every call releases its scratch: nothing may stay allocated after all the vectors.
        if (engine) expect(engine.info().bytesInUse).toBe(0);
      });

      for (const loaded of ALL) {
        if (!loaded.vector) {
          it(`${build} ${loaded.file}`, () => {
            throw new Error(`${loaded.file}: cannot parse vector: ${loaded.problem}`);
          });
          continue;
        }
        const v = loaded.vector;
        const mapping = mapVector(v);
        if (!mapping.ok) {
          it.skip(`${build} ${v.id} — not expressible: ${mapping.reason}`, () => {});
          continue;
        }
        it(`${build} ${v.id}`, () => runVector(engine, v, mapping.engineCase));
      }
    });
  }
});
