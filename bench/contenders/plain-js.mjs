// The plain JavaScript loop a user would write (bench/plain-js.mjs, shared with `npm start`):
// Float32Array in, a preallocated Float32Array out, JS-number (f64) arithmetic, two passes for
// the statistics.
import { plainForwardEval, plainForwardTrain, plainBackwardTrain } from '../plain-js.mjs';
import { EPS, MOMENTUM } from '../data.mjs';

export const id = 'plain-js';
export const label = 'plain JS loop';

export async function setup({ c, op, inputs, saved }) {
  const { layout, shape } = c;
  const { x, dy, weight, bias } = inputs;
  const rm = inputs.runningMean.slice(), rv = inputs.runningVar.slice();
  const out = new Float32Array(c.size);
  let last = null;
  const run = {
    inference: () => { plainForwardEval(x, shape, layout, weight, bias, rm, rv, EPS, out); },
    training: () => { last = plainForwardTrain(x, shape, layout, weight, bias, rm, rv, MOMENTUM, EPS, out); },
    backward: () => { last = plainBackwardTrain(dy, x, shape, layout, weight, saved.saveMean, saved.saveInvStd, out); },
  }[op];
  const output = () => ({
    main: out,
    ...(op === 'training' ? { mean: last.saveMean, invStd: last.saveInvStd } : {}),
    ...(op === 'backward' ? { dweight: last.dweight, dbias: last.dbias } : {}),
  });
  return { run, output, teardown() {} };
}
