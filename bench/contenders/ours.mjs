// Our engine as a user calls it, in four variants (one module each re-exports this):
//   zero-copy  tensors live in the engine's wasm memory (engine.tensor), y/dx written to another
//              resident tensor: no copies, the kernels' own cost plus the call overhead;
//   copy       plain Float32Arrays in, a caller-supplied plain Float32Array out (`out`): the
//              engine copies x (and dy) into scratch wasm memory and the result back out;
//   scalar     the scalar (no-SIMD) build, zero-copy;
//   relaxed    the relaxed-SIMD build, zero-copy (unsupported where the JavaScript engine rejects it).
// zero-copy and copy run the simd build (bit-reproducible; the bench's reference since before
// relaxed-simd existed).
// Per-channel arrays (weight, bias, running statistics, saved statistics) are plain arrays in
// every variant; the running statistics are this contender's own copies (training updates them).
import { EPS, MOMENTUM } from '../data.mjs';
import { engineFor, unsupportedBuild } from './engines.mjs';

const BUILD_OF = { 'zero-copy': 'simd', copy: 'simd', scalar: 'scalar', relaxed: 'relaxed-simd' };

export function oursContender(mode) {
  return async function setup({ c, op, inputs, saved }) {
    const build = BUILD_OF[mode];
    const why = await unsupportedBuild(build);
    if (why !== null) return { unsupported: `the ${build} build does not run here: ${why}` };
    const engine = await engineFor(build);
    const resident = mode !== 'copy';
    const { layout, shape } = c;
    const { weight, bias } = inputs;
    const runningMean = inputs.runningMean.slice(), runningVar = inputs.runningVar.slice();
    const held = [];
    const tensor = (v) => { const t = engine.tensor(v); held.push(t); return t; };
    let last = null;
    let run, output;
    if (op === 'backward') {
      const dyT = resident ? tensor(inputs.dy) : null, xT = resident ? tensor(inputs.x) : null;
      const dxT = resident ? tensor(c.size) : null;
      const dxPlain = resident ? null : new Float32Array(c.size);
      const opts = { layout, training: true, weight, saveMean: saved.saveMean, saveInvStd: saved.saveInvStd };
      run = resident
        ? () => { last = engine.backward(dyT.data, xT.data, shape, { ...opts, out: dxT.data }); }
        : () => { last = engine.backward(inputs.dy, inputs.x, shape, { ...opts, out: dxPlain }); };
      output = () => ({ main: resident ? dxT.data : dxPlain, dweight: last.dweight, dbias: last.dbias });
    } else {
      const training = op === 'training';
      const xT = resident ? tensor(inputs.x) : null, yT = resident ? tensor(c.size) : null;
      const yPlain = resident ? null : new Float32Array(c.size);
      const opts = { layout, training, weight, bias, runningMean, runningVar, momentum: MOMENTUM, eps: EPS };
      run = resident
        ? () => { last = engine.forward(xT.data, shape, { ...opts, out: yT.data }); }
        : () => { last = engine.forward(inputs.x, shape, { ...opts, out: yPlain }); };
      output = () => ({
        main: resident ? yT.data : yPlain,
        ...(training ? { mean: last.saveMean, invStd: last.saveInvStd } : {}),
      });
    }
    return {
      run,
      output,
      teardown() { for (const t of held) t.free(); held.length = 0; },
      info: { build: engine.info().build },
    };
  };
}
