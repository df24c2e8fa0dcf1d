// The batch norm a user would write by hand in plain JavaScript: Float32Array tensors,
// float64 (JS number) arithmetic, two passes per channel for mean and variance, no tuning.
// Same semantics as the engine (PyTorch): biased variance to normalize, unbiased variance
// into the running average, momentum = weight of the new batch. Layouts: 'NCHW' (channel
// axis 1) and 'NHWC' (channel axis last), any rank >= 2. weight/bias may be null (1 / 0).
// Baseline for the benchmarks (bench/start.mjs and the benchmark suite).

/** outer x C x inner view of the shape, as in src/layout.ts. */
function dims(shape, layout) {
  const axis = layout === 'NHWC' ? shape.length - 1 : 1;
  const C = shape[axis];
  let inner = 1;
  for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
  let size = 1;
  for (const d of shape) size *= d;
  return { C, inner, outer: size / (C * inner), size };
}

function normalize(x, shape, layout, weight, bias, mean, invStd, out) {
  const { C, inner, outer } = dims(shape, layout);
  if (layout === 'NHWC') {
    for (let r = 0; r < outer; r++) {
      for (let c = 0; c < C; c++) {
        const i = r * C + c;
        out[i] = (x[i] - mean[c]) * invStd[c] * (weight ? weight[c] : 1) + (bias ? bias[c] : 0);
      }
    }
  } else {
    for (let n = 0; n < outer; n++) {
      for (let c = 0; c < C; c++) {
        const m = mean[c], s = invStd[c] * (weight ? weight[c] : 1), b = bias ? bias[c] : 0;
        const base = (n * C + c) * inner;
        for (let i = 0; i < inner; i++) out[base + i] = (x[base + i] - m) * s + b;
      }
    }
  }
  return out;
}

/** Training forward: batch statistics, running stats updated in place. Returns { y, saveMean, saveInvStd }. */
export function plainForwardTrain(x, shape, layout, weight, bias, runningMean, runningVar, momentum = 0.1, eps = 1e-5, out = new Float32Array(x.length)) {
  const { C, inner, outer } = dims(shape, layout);
  const n = outer * inner;
  const mean = new Float64Array(C);
  const m2 = new Float64Array(C);
  if (layout === 'NHWC') {
    for (let r = 0; r < outer; r++) for (let c = 0; c < C; c++) mean[c] += x[r * C + c];
    for (let c = 0; c < C; c++) mean[c] /= n;
    for (let r = 0; r < outer; r++) {
      for (let c = 0; c < C; c++) {
        const d = x[r * C + c] - mean[c];
        m2[c] += d * d;
      }
    }
  } else {
    for (let c = 0; c < C; c++) {
      let sum = 0;
      for (let b = 0; b < outer; b++) {
        const base = (b * C + c) * inner;
        for (let i = 0; i < inner; i++) sum += x[base + i];
      }
      const m = sum / n;
      let sq = 0;
      for (let b = 0; b < outer; b++) {
        const base = (b * C + c) * inner;
        for (let i = 0; i < inner; i++) {
          const d = x[base + i] - m;
          sq += d * d;
        }
      }
      mean[c] = m;
      m2[c] = sq;
    }
  }
  const invStd = new Float64Array(C);
  for (let c = 0; c < C; c++) invStd[c] = 1 / Math.sqrt(m2[c] / n + eps);
  normalize(x, shape, layout, weight, bias, mean, invStd, out);
  if (runningMean && runningVar) {
    for (let c = 0; c < C; c++) {
      runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean[c];
      runningVar[c] = (1 - momentum) * runningVar[c] + momentum * (m2[c] / (n - 1));
    }
  }
  return { y: out, saveMean: Float32Array.from(mean), saveInvStd: Float32Array.from(invStd) };
}

/** Inference forward with the running statistics. Returns y (= out). */
export function plainForwardEval(x, shape, layout, weight, bias, runningMean, runningVar, eps = 1e-5, out = new Float32Array(x.length)) {
  const { C } = dims(shape, layout);
  const invStd = new Float64Array(C);
  for (let c = 0; c < C; c++) invStd[c] = 1 / Math.sqrt(runningVar[c] + eps);
  return normalize(x, shape, layout, weight, bias, runningMean, invStd, out);
}

/**
 * Training-mode backward, gradient through the batch statistics:
 *   dx = weight·invStd·(dy − Σdy/n − xhat·Σ(dy·xhat)/n),  dweight = Σ dy·xhat,  dbias = Σ dy.
 * Writes dx; returns { dweight, dbias }.
 */
export function plainBackwardTrain(dy, x, shape, layout, weight, saveMean, saveInvStd, dx) {
  const { C, inner, outer } = dims(shape, layout);
  const n = outer * inner;
  const dbias = new Float64Array(C);
  const dweight = new Float64Array(C);
  if (layout === 'NHWC') {
    for (let r = 0; r < outer; r++) {
      for (let c = 0; c < C; c++) {
        const i = r * C + c;
        dbias[c] += dy[i];
        dweight[c] += dy[i] * (x[i] - saveMean[c]) * saveInvStd[c];
      }
    }
    for (let r = 0; r < outer; r++) {
      for (let c = 0; c < C; c++) {
        const i = r * C + c;
        const xhat = (x[i] - saveMean[c]) * saveInvStd[c];
        const scale = (weight ? weight[c] : 1) * saveInvStd[c];
        dx[i] = scale * (dy[i] - dbias[c] / n - xhat * dweight[c] / n);
      }
    }
  } else {
    for (let c = 0; c < C; c++) {
      const m = saveMean[c], s = saveInvStd[c];
      let sumDy = 0, sumDyXhat = 0;
      for (let b = 0; b < outer; b++) {
        const base = (b * C + c) * inner;
        for (let i = 0; i < inner; i++) {
          sumDy += dy[base + i];
          sumDyXhat += dy[base + i] * (x[base + i] - m) * s;
        }
      }
      const scale = (weight ? weight[c] : 1) * s;
      for (let b = 0; b < outer; b++) {
        const base = (b * C + c) * inner;
        for (let i = 0; i < inner; i++) {
          const xhat = (x[base + i] - m) * s;
          dx[base + i] = scale * (dy[base + i] - sumDy / n - xhat * sumDyXhat / n);
        }
      }
      dbias[c] = sumDy;
      dweight[c] = sumDyXhat;
    }
  }
  return { dweight: Float32Array.from(dweight), dbias: Float32Array.from(dbias) };
}
