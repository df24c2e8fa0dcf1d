// How TensorFlow.js is called for each operation (environment-neutral: the tfjs namespace is
// passed in, so the Node contender, tfjs-wasm.mjs, and the browser bench, bench/browser/, time
// the same calls). See tfjs-wasm.mjs for what is timed and why NCHW is broadcasting arithmetic.
import { EPS, geometryOf } from '../data.mjs';

/** The naive-usage check of the backward costs a full tfjs gradient: only on small cases. */
const NAIVE_BACKWARD_MAX = 2_000_000;

/** The setup(ctx) of a tfjs contender; `getTf()` resolves to the tfjs namespace, backend ready. */
export function tfjsContender(getTf) {
  return async function setup({ c, op, inputs, compareNaive }) {
    const tf = await getTf();
    const { C } = geometryOf(c);
    const rank = c.shape.length;
    const channelAxis = c.layout === 'NHWC' ? rank - 1 : 1;
    const axes = [...Array(rank).keys()].filter((a) => a !== channelAxis);
    // tf.batchNorm where the channel axis is the last one; broadcasting arithmetic otherwise
    // (on NCHW with 1x1 spatial, tf.batchNorm's forward is right but tf.grads of it throws).
    const lastAxis = channelAxis === rank - 1;
    const pShape = lastAxis ? [C] : Array.from({ length: rank }, (_, a) => (a === 1 ? C : 1));
    const param = (v) => tf.tensor(v, pShape);

    const x = tf.tensor(inputs.x, c.shape);
    const dy = op === 'backward' ? tf.tensor(inputs.dy, c.shape) : null;
    const gamma = param(inputs.weight), beta = param(inputs.bias);
    const rm = param(inputs.runningMean), rv = param(inputs.runningVar);
    const held = [x, gamma, beta, rm, rv, ...(dy ? [dy] : [])];

    const normalize = lastAxis
      ? (t, mean, variance, g, b) => tf.batchNorm(t, mean, variance, b, g, EPS)
      : (t, mean, variance, g, b) => tf.add(tf.mul(tf.sub(t, mean), tf.mul(g, tf.rsqrt(tf.add(variance, EPS)))), b);
    const trainForward = (t, g, b) => {
      const { mean, variance } = tf.moments(t, axes, !lastAxis);
      return { y: normalize(t, mean, variance, g, b), mean, variance };
    };
    const flat = (t) => t.dataSync();
    const invStdOf = (variance) => Float32Array.from(variance, (v) => 1 / Math.sqrt(v + EPS));

    let last = null;
    let run;
    if (op === 'inference') {
      run = () => {
        const y = tf.tidy(() => normalize(x, rm, rv, gamma, beta));
        last = { main: flat(y) };
        y.dispose();
      };
    } else if (op === 'training') {
      run = () => {
        const r = tf.tidy(() => trainForward(x, gamma, beta));
        last = { main: flat(r.y), mean: flat(r.mean), invStd: invStdOf(flat(r.variance)) };
        tf.dispose([r.y, r.mean, r.variance]);
      };
    } else {
      const gradFn = tf.grads((t, g, b) => trainForward(t, g, b).y);
      run = () => {
        const [dx, dg, db] = gradFn([x, gamma, beta], dy);
        last = { main: flat(dx), dweight: flat(dg), dbias: flat(db) };
        tf.dispose([dx, dg, db]);
      };
    }

    // What a user gets from the obvious call on NCHW: tf.batchNorm with [C,1,1]-shaped parameters
    // (NumPy broadcasting says that is right; tfjs's kernels broadcast over the last axis).
    const notes = [];
    if (!lastAxis && (op !== 'backward' || c.size <= NAIVE_BACKWARD_MAX)) {
      const p3 = (t) => tf.reshape(t, [C, ...Array(rank - 2).fill(1)]);
      const naiveForward = (t, g, b) => {
        const { mean, variance } = tf.moments(t, axes);
        return tf.batchNorm(t, p3(mean), p3(variance), p3(b), p3(g), EPS);
      };
      let note;
      try {
        let out;
        if (op === 'backward') {
          out = tf.tidy(() => {
            const [dx, dg, db] = tf.grads(naiveForward)([x, tf.reshape(gamma, [C]), tf.reshape(beta, [C])], dy);
            return { main: dx.dataSync(), dweight: dg.dataSync(), dbias: db.dataSync() };
          });
        } else {
          const y = tf.tidy(() => (op === 'inference'
            ? tf.batchNorm(x, p3(rm), p3(rv), p3(beta), p3(gamma), EPS)
            : naiveForward(x, tf.reshape(gamma, [C]), tf.reshape(beta, [C]))));
          out = { main: y.dataSync() };
          y.dispose();
        }
        const r = compareNaive(out);
        note = `${r.correct ? 'correct' : 'WRONG'} (rel. err ${r.err.toExponential(1)})`;
      } catch (error) {
        note = `throws "${String(error?.message ?? error).split('\n')[0]}"`;
      }
      notes.push(`naive ${op === 'backward' ? 'tf.grads of ' : ''}tf.batchNorm with [C,1,1] parameters: ${note}; timed: broadcasting arithmetic`);
    }

    return {
      run,
      output: () => last,
      teardown() { tf.dispose(held); },
      notes,
      info: { formulation: lastAxis ? 'tf.batchNorm' : 'broadcast arithmetic' },
    };
  };
}
