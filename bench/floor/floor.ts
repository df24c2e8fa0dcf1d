// The memory floor: the least work any batch-norm pass can do, as plain f32x4 loops over the
// flat tensor with ONE scale/shift for every value (no per-channel parameters, no layout, no
// f64 statistics). It moves exactly the operation's minimal memory traffic:
//   inference  y = x·a + b                                       read n, write n      8 B/value
//   training   s = Σx (read-only pass), then y = x·a + (b − a·s/n)  read 2n, write n    12 B/value
//   backward   s1 = Σdy, s2 = Σdy·x (read-only pass over both),
//              then dx = dy·a + x·(−a·s2/n) − a·s1/n                read 4n, write n    20 B/value
// Every contender of the benchmark is reported as a ratio to these loops, measured in the same
// run on the same element count. Built by bench/floor/build.mjs into bench/results/tmp/floor.wasm:
//   asc bench/floor/floor.ts --config bench/floor/asconfig.json -O3 --enable simd --runtime stub \
//       --importMemory -o bench/results/tmp/floor.wasm
// The memory is imported: the bench runs these loops on tensors allocated in our SIMD engine's own
// memory (engine.tensor), the same kind of memory our zero-copy path streams, so the ratio
// compares loops, not memory mappings (a separately grown memory can stream up to ~1.5x faster
// or slower on this machine). Pointers are byte offsets into it; n = value count. No globals, no
// data segments: nothing of the engine's memory is touched but the tensors passed in.

/** First byte the host may use. */
export function heapBase(): usize {
  return __heap_base;
}

// @ts-ignore: decorator
@inline function affine(x: usize, y: usize, n: i32, a: f32, b: f32): void {
  const a4 = f32x4.splat(a), b4 = f32x4.splat(b);
  const bytes = <usize>n << 2;
  const main = bytes & ~(<usize>63);
  let k: usize = 0;
  for (; k < main; k += 64) {
    const p = x + k, q = y + k;
    const v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32), v3 = v128.load(p, 48);
    v128.store(q, f32x4.add(f32x4.mul(v0, a4), b4));
    v128.store(q, f32x4.add(f32x4.mul(v1, a4), b4), 16);
    v128.store(q, f32x4.add(f32x4.mul(v2, a4), b4), 32);
    v128.store(q, f32x4.add(f32x4.mul(v3, a4), b4), 48);
  }
  for (; k + 16 <= bytes; k += 16) v128.store(y + k, f32x4.add(f32x4.mul(v128.load(x + k), a4), b4));
  for (; k < bytes; k += 4) store<f32>(y + k, load<f32>(x + k) * a + b);
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** y = x·a + b. */
export function inference(x: usize, y: usize, n: i32, a: f32, b: f32): void {
  affine(x, y, n, a, b);
}

/** s = Σx, then y = x·a + (b − a·s/n); returns s. */
export function training(x: usize, y: usize, n: i32, a: f32, b: f32): f32 {
  const bytes = <usize>n << 2;
  const main = bytes & ~(<usize>63);
  let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
  let k: usize = 0;
  for (; k < main; k += 64) {
    const p = x + k;
    s0 = f32x4.add(s0, v128.load(p));
    s1 = f32x4.add(s1, v128.load(p, 16));
    s2 = f32x4.add(s2, v128.load(p, 32));
    s3 = f32x4.add(s3, v128.load(p, 48));
  }
  for (; k + 16 <= bytes; k += 16) s0 = f32x4.add(s0, v128.load(x + k));
  let s = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; k < bytes; k += 4) s += load<f32>(x + k);
  affine(x, y, n, a, b - a * (s / <f32>n));
  return s;
}

/** s1 = Σdy, s2 = Σdy·x, then dx = dy·a + x·(−a·s2/n) − a·s1/n; returns s1 + s2. */
export function backward(dy: usize, x: usize, dx: usize, n: i32, a: f32): f32 {
  const bytes = <usize>n << 2;
  const main = bytes & ~(<usize>31);
  let d0 = f32x4.splat(0), d1 = d0, e0 = d0, e1 = d0;
  let k: usize = 0;
  for (; k < main; k += 32) {
    const g0 = v128.load(dy + k), g1 = v128.load(dy + k, 16);
    const v0 = v128.load(x + k), v1 = v128.load(x + k, 16);
    d0 = f32x4.add(d0, g0); e0 = f32x4.add(e0, f32x4.mul(g0, v0));
    d1 = f32x4.add(d1, g1); e1 = f32x4.add(e1, f32x4.mul(g1, v1));
  }
  let s1 = hsum(f32x4.add(d0, d1)), s2 = hsum(f32x4.add(e0, e1));
  for (; k < bytes; k += 4) {
    const g = load<f32>(dy + k);
    s1 += g; s2 += g * load<f32>(x + k);
  }
  const b = -a * (s2 / <f32>n), c = -a * (s1 / <f32>n);
  const a4 = f32x4.splat(a), b4 = f32x4.splat(b), c4 = f32x4.splat(c);
  const main2 = bytes & ~(<usize>31);
  k = 0;
  for (; k < main2; k += 32) {
    const g0 = v128.load(dy + k), g1 = v128.load(dy + k, 16);
    const v0 = v128.load(x + k), v1 = v128.load(x + k, 16);
    v128.store(dx + k, f32x4.add(f32x4.add(f32x4.mul(g0, a4), f32x4.mul(v0, b4)), c4));
    v128.store(dx + k, f32x4.add(f32x4.add(f32x4.mul(g1, a4), f32x4.mul(v1, b4)), c4), 16);
  }
  for (; k < bytes; k += 4) store<f32>(dx + k, load<f32>(dy + k) * a + load<f32>(x + k) * b + c);
  return s1 + s2;
}

/** y = max(x, 0) (NaN stays NaN): the separate ReLU pass that bench/relu.mjs sets against the fused one. */
export function relu(x: usize, y: usize, n: i32): void {
  const zero = f32x4.splat(0);
  const bytes = <usize>n << 2;
  let k: usize = 0;
  for (; k + 16 <= bytes; k += 16) v128.store(y + k, f32x4.pmax(v128.load(x + k), zero));
  for (; k < bytes; k += 4) {
    const v = load<f32>(x + k);
    store<f32>(y + k, v < 0 ? 0 : v);
  }
}

/** g = y <= 0 ? 0 : dy: ReLU's backward as a separate pass (PyTorch's threshold_backward). */
export function reluBackward(dy: usize, y: usize, g: usize, n: i32): void {
  const zero = f32x4.splat(0);
  const bytes = <usize>n << 2;
  let k: usize = 0;
  for (; k + 16 <= bytes; k += 16) {
    v128.store(g + k, v128.andnot(v128.load(dy + k), f32x4.le(v128.load(y + k), zero)));
  }
  for (; k < bytes; k += 4) store<f32>(g + k, load<f32>(y + k) <= 0 ? 0 : load<f32>(dy + k));
}
