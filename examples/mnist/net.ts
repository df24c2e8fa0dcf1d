// The fully-connected network of Ioffe & Szegedy (2015), section 4.1: dense layers, sigmoid,
// softmax cross-entropy and plain SGD in TypeScript; batch normalization (optional, before each
// sigmoid) through the package's BatchNorm layer, i.e. the wasm kernels.
//
// Shapes are row-major: a batch of n vectors of width d is n*d floats, which is the NCHW rank-2
// layout [N, C] the BatchNorm layer takes.
import { gaussian, rng } from './data.js';

/** What the network needs from a normalization layer: the surface of the package's BatchNorm. */
export interface NormLayer {
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  gradWeight: Float32Array | null;
  gradBias: Float32Array | null;
  forward(x: Float32Array, shape: readonly number[]): Float32Array;
  backward(dy: Float32Array): Float32Array;
  train(mode?: boolean): unknown;
}

/**
 * C[m, :] += sum_k A(m, k) * B[k, :] for row-major B (K x N) and C (M x N), where
 * A(m, k) = A[m * rowStride + k * colStride] (so A or its transpose). Zero entries of A are
 * skipped (most MNIST pixels are 0) and the rest are taken four at a time, which roughly halves
 * the time of the plain triple loop in V8.
 */
function addProduct(C: Float32Array, A: Float32Array, B: Float32Array, M: number, K: number, N: number,
  rowStride: number, colStride: number): void {
  const offsets = new Int32Array(K), values = new Float64Array(K);
  for (let m = 0; m < M; m++) {
    let nz = 0;
    for (let k = 0; k < K; k++) {
      const a = A[m * rowStride + k * colStride];
      if (a !== 0) { offsets[nz] = k * N; values[nz] = a; nz++; }
    }
    const c = m * N;
    let t = 0;
    for (; t + 3 < nz; t += 4) {
      const a0 = values[t], a1 = values[t + 1], a2 = values[t + 2], a3 = values[t + 3];
      const b0 = offsets[t], b1 = offsets[t + 1], b2 = offsets[t + 2], b3 = offsets[t + 3];
      for (let j = 0; j < N; j++) C[c + j] += a0 * B[b0 + j] + a1 * B[b1 + j] + a2 * B[b2 + j] + a3 * B[b3 + j];
    }
    for (; t < nz; t++) {
      const a = values[t], b = offsets[t];
      for (let j = 0; j < N; j++) C[c + j] += a * B[b + j];
    }
  }
}

/** y = x W + b with W stored [in][out]; remembers its input for backward. */
export class Dense {
  readonly W: Float32Array;
  readonly b: Float32Array | null;
  readonly gW: Float32Array;
  readonly gb: Float32Array | null;
  private x: Float32Array | null = null;

  constructor(readonly inputs: number, readonly outputs: number, bias: boolean, normal: () => number, std: number) {
    this.W = Float32Array.from({ length: inputs * outputs }, () => std * normal());
    this.gW = new Float32Array(inputs * outputs);
    this.b = bias ? new Float32Array(outputs) : null;
    this.gb = bias ? new Float32Array(outputs) : null;
  }

  forward(x: Float32Array, n: number): Float32Array {
    const { inputs: I, outputs: O, W, b } = this;
    const y = new Float32Array(n * O);
    if (b) for (let r = 0; r < n; r++) y.set(b, r * O);
    addProduct(y, x, W, n, I, O, I, 1); // y[r, :] += sum_i x[r, i] W[i, :]
    this.x = x;
    return y;
  }

  /** Sets gW, gb for dy = dLoss/dy of the last forward; returns dLoss/dx when asked. */
  backward(dy: Float32Array, n: number, wantDx: boolean): Float32Array | null {
    const { inputs: I, outputs: O, W, gW, gb } = this;
    const x = this.x!;
    if (gb) {
      gb.fill(0);
      for (let r = 0; r < n; r++) for (let j = 0; j < O; j++) gb[j] += dy[r * O + j];
    }
    gW.fill(0);
    addProduct(gW, x, dy, I, n, O, 1, I); // gW[i, :] += sum_r x[r, i] dy[r, :]
    if (!wantDx) return null;
    const WT = new Float32Array(O * I); // W transposed, [out][in]
    for (let i = 0; i < I; i++) for (let j = 0; j < O; j++) WT[j * I + i] = W[i * O + j];
    const dx = new Float32Array(n * I);
    addProduct(dx, dy, WT, n, O, I, O, 1); // dx[r, :] += sum_j dy[r, j] W[:, j]
    return dx;
  }
}

export function sigmoid(z: Float32Array): Float32Array {
  const a = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) a[i] = 1 / (1 + Math.exp(-z[i]));
  return a;
}

/** Mean softmax cross-entropy over the batch, its gradient wrt the logits, and the hits. */
export function softmaxCrossEntropy(logits: Float32Array, labels: ArrayLike<number>, n: number, classes: number):
  { loss: number; correct: number; dlogits: Float32Array } {
  const dlogits = new Float32Array(n * classes);
  let loss = 0, correct = 0;
  for (let r = 0; r < n; r++) {
    const o = r * classes;
    let max = -Infinity, arg = 0;
    for (let k = 0; k < classes; k++) if (logits[o + k] > max) { max = logits[o + k]; arg = k; }
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += Math.exp(logits[o + k] - max);
    const label = labels[r];
    loss += Math.log(sum) - (logits[o + label] - max);
    if (arg === label) correct++;
    for (let k = 0; k < classes; k++) dlogits[o + k] = (Math.exp(logits[o + k] - max) / sum - (k === label ? 1 : 0)) / n;
  }
  return { loss: loss / n, correct, dlogits };
}

export interface NetworkOptions {
  /** Layer widths, input first: [784, 100, 100, 100, 10]. */
  sizes: number[];
  /** Builds the normalization placed before each sigmoid (e.g. c => new BatchNorm(engine, c)); omit for the plain network. */
  norm?: (features: number) => NormLayer;
  /** Standard deviation of the Gaussian initial weights. */
  initStd: number;
  /** Seed of the initial weights: two networks with the same seed and sizes start from the same W. */
  seed: number;
}

export interface Parameter {
  name: string;
  value: Float32Array;
  grad(): Float32Array;
}

/** Dense -> [BN] -> sigmoid, per hidden layer, then Dense -> softmax. */
export class Network {
  readonly hidden: Dense[] = [];
  readonly norms: NormLayer[] = [];
  readonly output: Dense;
  /** Per hidden layer, the input to its sigmoids from the last forward (n x width). */
  readonly sigmoidInputs: Float32Array[] = [];
  private activations: Float32Array[] = [];
  private n = 0;

  constructor(readonly options: NetworkOptions) {
    const { sizes, norm, initStd, seed } = options;
    const normal = gaussian(rng(seed));
    const L = sizes.length - 1;
    for (let l = 0; l < L - 1; l++) {
      // With BN the dense bias is redundant (BN's beta takes its role; paper section 3.2).
      this.hidden.push(new Dense(sizes[l], sizes[l + 1], !norm, normal, initStd));
      if (norm) this.norms.push(norm(sizes[l + 1]));
    }
    this.output = new Dense(sizes[L - 1], sizes[L], true, normal, initStd);
  }

  get batchNorm(): boolean {
    return this.norms.length > 0;
  }

  /** Training mode (BN uses and tracks batch statistics) or eval mode (BN uses running statistics). */
  train(mode = true): void {
    for (const bn of this.norms) bn.train(mode);
  }

  /** Logits for a batch of n inputs. */
  forward(x: Float32Array, n: number): Float32Array {
    this.n = n;
    let h = x;
    this.activations = [];
    for (let l = 0; l < this.hidden.length; l++) {
      let z = this.hidden[l].forward(h, n);
      if (this.batchNorm) z = this.norms[l].forward(z, [n, this.hidden[l].outputs]);
      this.sigmoidInputs[l] = z;
      h = sigmoid(z);
      this.activations[l] = h;
    }
    return this.output.forward(h, n);
  }

  /** Gradients of every parameter for dLoss/dlogits; returns dLoss/dx when asked. */
  backward(dlogits: Float32Array, wantInputGrad = false): Float32Array | null {
    const n = this.n;
    let d = this.output.backward(dlogits, n, true)!;
    for (let l = this.hidden.length - 1; l >= 0; l--) {
      const a = this.activations[l];
      const dz = new Float32Array(d.length);
      for (let i = 0; i < d.length; i++) dz[i] = d[i] * a[i] * (1 - a[i]);
      const dpre = this.batchNorm ? this.norms[l].backward(dz) : dz;
      const dx = this.hidden[l].backward(dpre, n, l > 0 || wantInputGrad);
      if (l === 0) return dx;
      d = dx!;
    }
    return null;
  }

  parameters(): Parameter[] {
    const ps: Parameter[] = [];
    const dense = (name: string, layer: Dense) => {
      ps.push({ name: `${name}.W`, value: layer.W, grad: () => layer.gW });
      if (layer.b) ps.push({ name: `${name}.b`, value: layer.b, grad: () => layer.gb! });
    };
    this.hidden.forEach((layer, l) => {
      dense(`dense${l + 1}`, layer);
      const bn = this.norms[l];
      if (bn?.weight) ps.push({ name: `bn${l + 1}.gamma`, value: bn.weight, grad: () => bn.gradWeight! });
      if (bn?.bias) ps.push({ name: `bn${l + 1}.beta`, value: bn.bias, grad: () => bn.gradBias! });
    });
    dense('output', this.output);
    return ps;
  }

  /** Plain SGD: p <- p - lr * dLoss/dp, for the gradients of the last backward. */
  sgd(lr: number): void {
    for (const p of this.parameters()) {
      const v = p.value, g = p.grad();
      for (let i = 0; i < v.length; i++) v[i] -= lr * g[i];
    }
  }

  /** One training step on a mini-batch: forward, loss, backward, SGD. Returns the batch loss. */
  step(x: Float32Array, labels: ArrayLike<number>, n: number, lr: number): number {
    const logits = this.forward(x, n);
    const { loss, dlogits } = softmaxCrossEntropy(logits, labels, n, this.output.outputs);
    this.backward(dlogits);
    this.sgd(lr);
    return loss;
  }

  /**
   * Accuracy and mean loss on a dataset in eval mode (BN with running statistics), and the
   * input to sigmoid `probe.unit` of hidden layer `probe.layer` for every example.
   */
  evaluate(images: Float32Array, labels: Uint8Array, count: number, probe: { layer: number; unit: number }, chunk = 500):
    { accuracy: number; loss: number; probe: Float32Array } {
    const width = images.length / count;
    const probed = new Float32Array(count);
    let correct = 0, loss = 0;
    this.train(false);
    try {
      for (let start = 0; start < count; start += chunk) {
        const n = Math.min(chunk, count - start);
        const logits = this.forward(images.subarray(start * width, (start + n) * width), n);
        const r = softmaxCrossEntropy(logits, labels.subarray(start, start + n), n, this.output.outputs);
        correct += r.correct;
        loss += r.loss * n;
        const z = this.sigmoidInputs[probe.layer], C = this.hidden[probe.layer].outputs;
        for (let i = 0; i < n; i++) probed[start + i] = z[i * C + probe.unit];
      }
    } finally {
      this.train(true);
    }
    return { accuracy: correct / count, loss: loss / count, probe: probed };
  }
}
