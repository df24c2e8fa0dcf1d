// Our engine as a user calls it, in four variants (one module each re-exports this):
//   zero-copy  every array lives in the engine's wasm memory (engine.tensor): x, dy, the
//              per-channel inputs, and the destinations of every output (`out` for y/dx,
//              saveMeanOut/saveInvStdOut, dweightOut/dbiasOut): no copies and no allocation,
//              the kernels' own cost plus the call overhead;
//   copy       plain Float32Arrays in, caller-supplied plain Float32Arrays out (the same
//              destinations): the engine copies every input into scratch wasm memory and every
//              result back out;
//   scalar     the scalar (no-SIMD) build, zero-copy;
//   relaxed    the relaxed-SIMD build, zero-copy (unsupported where the JavaScript engine rejects it).
// zero-copy and copy run the simd build (bit-reproducible; the bench's reference since before
// relaxed-simd existed).
// The running statistics are this contender's own copies (training updates them).
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
    const { layout, shape, C } = c;
    const held = [];
    const tensor = (v) => { const t = engine.tensor(v); held.push(t); return t; };
    // A per-channel array, read at each call: a tensor's live view (zero-copy; the copy path of
    // another contender on the same engine may grow memory between calls), or a plain copy.
    const channel = (v) => {
      if (!resident) { const a = Float32Array.from(v); return () => a; }
      const t = tensor(v);
      return () => t.data;
    };
    const weight = channel(inputs.weight), bias = channel(inputs.bias);
    const runningMean = channel(inputs.runningMean), runningVar = channel(inputs.runningVar);
    let last = null;
    let run, output;
    if (op === 'backward') {
      const dyT = resident ? tensor(inputs.dy) : null, xT = resident ? tensor(inputs.x) : null;
      const dxT = resident ? tensor(c.size) : null;
      const dxPlain = resident ? null : new Float32Array(c.size);
      const saveMean = channel(saved.saveMean), saveInvStd = channel(saved.saveInvStd);
      const dweight = channel(new Float32Array(C)), dbias = channel(new Float32Array(C));
      const opts = (out) => ({
        layout, training: true, weight: weight(), saveMean: saveMean(), saveInvStd: saveInvStd(), out, dweightOut: dweight(), dbiasOut: dbias(),
      });
      run = resident
        ? () => { last = engine.backward(dyT.data, xT.data, shape, opts(dxT.data)); }
        : () => { last = engine.backward(inputs.dy, inputs.x, shape, opts(dxPlain)); };
      output = () => ({ main: resident ? dxT.data : dxPlain, dweight: last.dweight, dbias: last.dbias });
    } else {
      const training = op === 'training';
      const xT = resident ? tensor(inputs.x) : null, yT = resident ? tensor(c.size) : null;
      const yPlain = resident ? null : new Float32Array(c.size);
      const saveMean = channel(new Float32Array(C)), saveInvStd = channel(new Float32Array(C));
      const opts = (out) => ({
        layout, training, weight: weight(), bias: bias(), runningMean: runningMean(), runningVar: runningVar(), momentum: MOMENTUM, eps: EPS,
        out, saveMeanOut: saveMean(), saveInvStdOut: saveInvStd(),
      });
      run = resident
        ? () => { last = engine.forward(xT.data, shape, opts(yT.data)); }
        : () => { last = engine.forward(inputs.x, shape, opts(yPlain)); };
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
