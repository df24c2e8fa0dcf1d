// Memory lifecycle of an engine: no growth across repeated calls (with the bound stated and
// measured), tensors freed and their memory reused (arena invariants under random alloc/free),
// requests beyond 4 GiB and refused memory.grow fail with MemoryError before anything is
// allocated or changed and leave the engine usable, and growth never leaves a stale view
// without a clear error.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  createEngine, BatchNorm, BatchNormError, InvalidArgumentError, MemoryError, ShapeError, groupNorm, groupNormBackward, instanceNorm, type Engine, type Tensor,
} from '../src/index.js';
import { ALIGN, MAX_MEMORY_BYTES } from '../src/memory.js';
import { workspaceBytes } from '../src/exec.js';
import { BUILDS, makeEngine, unsupported, type BuildName } from './helpers/engines.js';
import { gauss, product, rng } from './helpers/numeric.js';

const PAGE = 65536;
const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

function data(n: number, seed: number): Float32Array {
  const g = gauss(rng(seed));
  return Float32Array.from({ length: n }, () => g());
}

/** Byte-for-byte equality (fast on large arrays, unlike toEqual). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView, what: string): void {
  expect(a.byteLength, what).toBe(b.byteLength);
  expect(Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)), what).toBe(0);
}

function expectError(call: () => unknown, cls: typeof BatchNormError, argument: string, message?: RegExp): BatchNormError {
  let thrown: unknown;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  if (!(thrown instanceof cls)) throw new Error(`expected ${cls.name}(${argument}), got ${thrown === undefined ? 'no error' : String(thrown)}`, { cause: thrown });
  const e = thrown as BatchNormError;
  expect(e.argument).toBe(argument);
  expect(e.message.startsWith(`${argument}: expected ${e.expected}, got ${e.received}`)).toBe(true);
  if (message) expect(e.message).toMatch(message);
  return e;
}

/** Arena invariants: free blocks sorted, disjoint, non-adjacent, aligned, inside [base, top); live blocks disjoint from them and each other. */
function checkArena(engine: Engine): void {
  const { base, top, free, live } = engine.arena.layout();
  const fail = (why: string) => { throw new Error(`arena invariant: ${why} ${JSON.stringify({ base, top, free, live })}`); };
  const all = [...free, ...live].sort((a, b) => a.ptr - b.ptr);
  for (const b of all) {
    if (b.ptr % ALIGN || b.bytes % ALIGN || b.bytes <= 0) fail(`block ${b.ptr}+${b.bytes} not aligned to ${ALIGN}`);
    if (b.ptr < base || b.ptr + b.bytes > top) fail(`block ${b.ptr}+${b.bytes} outside [base, top)`);
  }
  for (let i = 1; i < all.length; i++) if (all[i].ptr < all[i - 1].ptr + all[i - 1].bytes) fail('blocks overlap');
  for (let i = 1; i < free.length; i++) if (free[i].ptr <= free[i - 1].ptr + free[i - 1].bytes) fail('adjacent free blocks were not merged');
  if (free.length && free[free.length - 1].ptr + free[free.length - 1].bytes >= top) fail('a free block touching the top was not returned to it');
  if (top > engine.info().memoryBytes) fail('top beyond memory');
  if (engine.info().bytesInUse !== live.reduce((sum, b) => sum + b.bytes, 0)) fail('bytesInUse differs from the live blocks');
}

// ---------------------------------------------------------------------------------------------
// No growth across repeated calls
// ---------------------------------------------------------------------------------------------
describe('memory does not grow across repeated calls', () => {
  /**
   * One round = 6 calls of one shape: training forward (copy path, NCHW), eval forward
   * (zero-copy, in place, NHWC), backward (copy path), backward (zero-copy, dx in dy), and a
   * layer's forward + backward. The bound: after the first round, memory.buffer.byteLength never
   * changes, and it is at most base + live tensors + the largest call's scratch, page-rounded.
   */
  function rounds(engine: Engine, shape: number[], count: number) {
    const size = product(shape);
    const C = shape[1];
    const nhwc = [shape[0], ...shape.slice(2), C];
    const x = data(size, 1), dy = data(size, 2);
    const rm = new Float32Array(C), rv = new Float32Array(C).fill(1);
    const tx = engine.tensor(x), tdy = engine.tensor(dy);
    const bn = new BatchNorm(engine, C);
    const liveBytes = engine.info().bytesInUse;
    const base = engine.arena.layout().base;
    // Largest scratch of one call: backward's copy path, dy + x copies, sums and parameters (NHWC adds the workspace).
    const scratch = 2 * roundUp(4 * size, ALIGN) + 2 * roundUp(16 * C, ALIGN) + roundUp(workspaceBytes(C), ALIGN) + roundUp(24 * C, ALIGN);
    const bound = roundUp(base + liveBytes + scratch, PAGE);
    const f = engine.forward(x, shape, { training: true });
    const round = () => {
      engine.forward(x, shape, { training: true, runningMean: rm, runningVar: rv });
      engine.forward(tx.data, nhwc, { layout: 'NHWC', training: false, runningMean: rm, runningVar: rv, out: tx.data });
      engine.backward(dy, x, shape, { training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
      engine.backward(tdy.data, tx.data, shape, { training: false, saveMean: f.saveMean, saveInvStd: f.saveInvStd, out: tdy.data });
      bn.forward(x, shape);
      bn.backward(dy);
    };
    round();
    const after1 = engine.info().memoryBytes;
    const layout1 = engine.arena.layout();
    let max = after1;
    const t0 = performance.now();
    for (let i = 1; i < count; i++) {
      round();
      if (i % 512 === 0) {
        max = Math.max(max, engine.info().memoryBytes);
        expect(engine.info().bytesInUse).toBe(liveBytes);
      }
    }
    const ms = performance.now() - t0;
    max = Math.max(max, engine.info().memoryBytes);
    const layout = engine.arena.layout();
    tx.free();
    tdy.free();
    return { after1, max, bound, liveBytes, layout1, layout, ms, bytesInUse: engine.info().bytesInUse };
  }

  it('100 000 calls of one shape ([4, 8, 3, 3], SIMD build): memory stays at its first-round size', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    const r = rounds(engine, [4, 8, 3, 3], Math.ceil(100_000 / 6));
    console.log(`[memory] 100 002 calls [4, 8, 3, 3]: memory ${r.after1} bytes after the first round, max ${r.max}, bound ${r.bound}; ${(r.ms / 100_000 * 1000).toFixed(1)} µs/call`);
    expect(r.max).toBe(r.after1);
    expect(r.after1).toBeLessThanOrEqual(r.bound);
    expect(r.after1).toBe(PAGE); // the stated bound for this shape: one 64 KiB page, never grown
    expect(r.layout.top).toBe(r.layout1.top); // no creeping top
    expect(r.layout.free.length).toBeLessThanOrEqual(r.layout1.free.length);
    expect(r.bytesInUse).toBe(0);
  });

  it.for(BUILDS)('calls on a 1 MiB shape ([16, 32, 16, 32]), %s build: memory stays under the stated bound', async (build: BuildName, ctx) => {
    ctx.skip(unsupported(build) !== null, unsupported(build) ?? '');
    const engine = await makeEngine(build);
    const n = build === 'simd' ? 40 : 20;
    const r = rounds(engine, [16, 32, 16, 32], n);
    console.log(`[memory] ${build} ${6 * n} calls [16, 32, 16, 32]: memory ${r.after1} bytes after the first round (bound ${r.bound}), max ${r.max}; ${(r.ms / (6 * n - 6) * 1000).toFixed(0)} µs/call`);
    expect(r.max).toBe(r.after1);
    expect(r.after1).toBeLessThanOrEqual(r.bound);
    expect(r.layout.top).toBe(r.layout1.top);
    expect(r.bytesInUse).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Tensors: free and reuse
// ---------------------------------------------------------------------------------------------
describe('tensors are freed and their memory reused', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ simd: true, threads: 1 });
  });

  it('a freed block is reused by the next allocation that fits; freeing everything returns the top to the base', () => {
    const base = engine.arena.layout().base;
    const a = engine.tensor(1000), b = engine.tensor(2000), c = engine.tensor(10);
    expect(a.byteOffset).toBe(base);
    b.free();
    const d = engine.tensor(1500); // fits in b's hole
    expect(d.byteOffset).toBe(b.byteOffset);
    const e = engine.tensor(100); // the rest of b's hole
    expect(e.byteOffset).toBe(b.byteOffset + roundUp(1500 * 4, ALIGN));
    checkArena(engine);
    for (const t of [a, c, d, e]) t.free();
    expect(engine.arena.layout()).toEqual({ base, top: base, free: [], live: [] });
    expect(engine.info().bytesInUse).toBe(0);
  });

  it('adjacent free blocks merge, so a larger tensor fits where two freed ones were', () => {
    const a = engine.tensor(100), b = engine.tensor(100), c = engine.tensor(100), guard = engine.tensor(1);
    const memory = engine.info().memoryBytes;
    a.free();
    c.free();
    b.free(); // merges with a and c
    const big = engine.tensor(3 * roundUp(400, ALIGN) / 4);
    expect(big.byteOffset).toBe(a.byteOffset);
    expect(engine.info().memoryBytes).toBe(memory);
    checkArena(engine);
    big.free();
    guard.free();
    expect(engine.info().bytesInUse).toBe(0);
  });

  it('free() is idempotent; a freed tensor throws MemoryError on every use; zero-filled on reuse', () => {
    const t = engine.tensor(Float32Array.from([1, 2, 3]));
    t.free();
    t.free();
    expectError(() => t.data, MemoryError, 'tensor', /a freed tensor/);
    expectError(() => t.toArray(), MemoryError, 'tensor');
    expectError(() => t.set([1, 2, 3]), MemoryError, 'tensor');
    const u = engine.tensor(3); // same block, must not show t's values
    expect(u.byteOffset).toBe(t.byteOffset);
    expect(Array.from(u.data)).toEqual([0, 0, 0]);
    u.free();
    expectError(() => engine.arena.release(u.byteOffset), MemoryError, 'ptr');
  });

  it('property: random allocate / write / free sequences keep the arena consistent and every live tensor intact', () => {
    type Op = { kind: 'alloc'; length: number } | { kind: 'free'; pick: number } | { kind: 'call'; pick: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('alloc' as const), length: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 4_000 }), fc.constant(20_000)) }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('call' as const), pick: fc.nat() }) },
    );
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.integer(), (ops, seed) => {
      const e = engine;
      const live: Array<{ t: Tensor; pattern: Float32Array }> = [];
      let peakLive = 0;
      try {
        for (const op of ops) {
          if (op.kind === 'alloc') {
            const pattern = data(op.length, seed + live.length);
            live.push({ t: e.tensor(pattern), pattern });
            peakLive = Math.max(peakLive, e.info().bytesInUse);
          } else if (op.kind === 'free' && live.length) {
            live.splice(op.pick % live.length, 1)[0].t.free();
          } else if (op.kind === 'call' && live.length) {
            // A zero-copy call on one tensor (its scratch may grow memory): the others must not change.
            const { t, pattern } = live[op.pick % live.length];
            if (t.length >= 4) {
              const shape = [t.length / 2 >= 2 && t.length % 2 === 0 ? 2 : 1, t.length % 2 === 0 ? t.length / 2 : t.length];
              if (shape[0] === 2) e.forward(t.data, shape, { training: false, runningMean: new Float32Array(shape[1]), runningVar: new Float32Array(shape[1]).fill(1), eps: 1 });
              expect(Buffer.compare(Buffer.from(t.data.buffer, t.byteOffset, 4 * t.length), Buffer.from(pattern.buffer)), 'an input tensor changed').toBe(0);
            }
          }
          checkArena(e);
          for (const { t, pattern } of live) {
            if (Buffer.compare(Buffer.from(t.data.buffer, t.byteOffset, 4 * t.length), Buffer.from(pattern.buffer)) !== 0) throw new Error('a live tensor lost its contents');
          }
        }
      } finally {
        live.forEach(({ t }) => t.free());
      }
      checkArena(e);
      expect(e.arena.layout().top, 'freeing everything returns the top to the base').toBe(e.arena.layout().base);
      // Everything was freed: the same peak again fits without growing.
      const m = e.info().memoryBytes;
      const again = e.tensor(Math.max(1, peakLive / 4));
      expect(e.info().memoryBytes).toBe(m);
      again.free();
    }), { numRuns: 120, seed: 0x3e3 });
  });
});

describe('Arena.reserve: the preflight of a call', () => {
  it('property: after reserve(sizes), alloc of those sizes in order never grows memory; a refused reserve changes nothing', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 1, max: 30_000 }), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 12 }),
      fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 200_000 })), { minLength: 1, maxLength: 6 }), fc.boolean(),
      (pre, frees, sizes, refuse) => {
        const arena = engine.arena;
        const held = pre.map((n) => arena.alloc(n));
        for (const f of frees) if (held.length) arena.release(held.splice(f % held.length, 1)[0]);
        const requests = sizes.map((b, i) => [b, `r${i}`] as const);
        if (refuse) {
          const memory = engine.kernels.memory;
          Object.defineProperty(memory, 'grow', { configurable: true, value() { throw new RangeError('simulated'); } });
          const layout = arena.layout(), bytes = engine.info().memoryBytes;
          try {
            arena.reserve(requests);
            // No growth was needed: everything fits in memory as it is.
          } catch (error) {
            expect(error).toBeInstanceOf(MemoryError);
            expect(arena.layout()).toEqual(layout);
            expect(engine.info().memoryBytes).toBe(bytes);
            return;
          } finally {
            delete (memory as { grow?: unknown }).grow;
            held.forEach((p) => arena.release(p));
          }
          return;
        }
        arena.reserve(requests);
        const bytes = engine.info().memoryBytes;
        const got = sizes.filter((b) => b > 0).map((b) => arena.alloc(b));
        expect(engine.info().memoryBytes, 'an allocation after reserve() grew memory').toBe(bytes);
        checkArena(engine);
        [...got, ...held].forEach((p) => arena.release(p));
        expect(arena.layout().top).toBe(arena.layout().base);
      },
    ), { numRuns: 200, seed: 0x7e5 });
  });
});

// ---------------------------------------------------------------------------------------------
// 4 GiB
// ---------------------------------------------------------------------------------------------
describe('requests beyond 4 GiB fail with MemoryError before any allocation', () => {
  function unchanged(engine: Engine) {
    const layout = engine.arena.layout();
    const memory = engine.info().memoryBytes;
    return () => {
      expect(engine.info().memoryBytes, 'memory grew').toBe(memory);
      expect(engine.arena.layout(), 'something was allocated').toEqual(layout);
    };
  }

  it('engine.tensor(2^30 + 1), (2^30), (2^32), (2^53) and a [2^15, 2^15] call on a fresh engine', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    const same = unchanged(engine);
    for (const length of [2 ** 30 + 1, 2 ** 30, 2 ** 32, 2 ** 53, 2 ** 1000]) {
      expectError(() => engine.tensor(length), MemoryError, 'length', /wasm32 memory is 4 GiB/);
      same();
    }
    // Too many elements is a ShapeError at validation (before any buffer is even looked at).
    expectError(() => engine.forward(new Float32Array(4), [2 ** 16, 2 ** 15], { training: true }), ShapeError, 'shape', /at most 1073741824 elements/);
    same();
  });

  it('near the 4 GiB ceiling: tensors and copy-path calls whose scratch would cross it fail before allocating or growing anything', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    // Move the arena's top to 4 GiB − 6 MiB. (The memory really grows to that size, which only
    // reserves address space: nothing is written, so the process does not use 4 GiB of RAM.)
    const { top } = engine.arena.layout();
    const headroom = 6 * 2 ** 20;
    const filler = engine.arena.alloc(MAX_MEMORY_BYTES - headroom - top, 'filler');
    expect(engine.info().memoryBytes).toBeGreaterThan(MAX_MEMORY_BYTES - 8 * 2 ** 20);
    const same = unchanged(engine);

    // A tensor one value too large for the headroom.
    expectError(() => engine.tensor(headroom / 4 + 1), MemoryError, 'length', /^length: expected at most 6291456 more bytes \(wasm32 memory is 4 GiB\), got 6291520 bytes$/);
    same();

    // Forward, copy path: the x copy (6 MiB − 64 B) fits, the plan's workspace (statistics,
    // parameters, partials: one allocation) after it does not.
    const size = headroom / 4 - 16;
    const x = data(size, 3), rm = new Float32Array(16), rv = new Float32Array(16).fill(1), out = new Float32Array(size);
    const xBefore = x.slice();
    expectError(() => engine.forward(x, [size / 16, 16], { training: true, runningMean: rm, runningVar: rv, out }), MemoryError, 'workspace', /wasm32 memory is 4 GiB/);
    same();
    sameBytes(x, xBefore, 'x');
    expect(rm).toEqual(new Float32Array(16));
    expect(rv).toEqual(new Float32Array(16).fill(1));
    sameBytes(out, new Float32Array(size), 'out');

    // Backward, copy path: the dy copy (3 MiB) fits, the x copy after it does not.
    const half = headroom / 8 + 16; // dy's copy is 3 MiB + 64 B: x's no longer fits
    const dy2 = data(half, 4), x2 = data(half, 5);
    expectError(() => engine.backward(dy2, x2, [half / 4, 4], { training: true, saveMean: new Float32Array(4), saveInvStd: new Float32Array(4).fill(1) }), MemoryError, 'x', /wasm32 memory is 4 GiB/);
    same();

    // A layer: its state is untouched by the failure.
    const bn = new BatchNorm(engine, 16);
    expectError(() => bn.forward(x, [size / 16, 16]), MemoryError, 'workspace');
    expect(bn.numBatchesTracked).toBe(0);
    expect(bn.runningMean).toEqual(new Float32Array(16));
    same();

    // The engine is still usable: a call that fits in the headroom works and matches a fresh engine.
    const small = data(4096, 6);
    const ref = (await createEngine({ simd: true, threads: 1 })).forward(small, [256, 16], { training: true });
    const got = engine.forward(small, [256, 16], { training: true });
    sameBytes(got.y, ref.y, 'y');
    expect(got.saveMean).toEqual(ref.saveMean);
    engine.arena.release(filler);
    expect(engine.info().bytesInUse).toBe(0);
    checkArena(engine);
  });
});

// ---------------------------------------------------------------------------------------------
// A refused memory.grow
// ---------------------------------------------------------------------------------------------
describe('a refused memory.grow leaves the engine usable and every buffer untouched', () => {
  /** Makes this engine instance's memory.grow throw (as V8 does when it cannot grow), `times` times. */
  function refuseGrow(engine: Engine, times = Infinity): { restore(): void; refused(): number } {
    const memory = engine.kernels.memory;
    let refused = 0;
    const original = memory.grow;
    Object.defineProperty(memory, 'grow', {
      configurable: true,
      value(pages: number) {
        if (refused < times) {
          refused++;
          throw new RangeError('WebAssembly.Memory.grow(): Maximum memory size exceeded (simulated)');
        }
        return original.call(memory, pages);
      },
    });
    return { restore: () => { delete (memory as { grow?: unknown }).grow; }, refused: () => refused };
  }

  it.for(BUILDS)('%s build: tensor(), forward, backward and a layer throw MemoryError; after the refusal ends the same calls succeed with the same results', async (build: BuildName, ctx) => {
    ctx.skip(unsupported(build) !== null, unsupported(build) ?? '');
    const engine = await makeEngine(build);
    const other = await makeEngine(build);
    const shape = [8, 4, 64, 64]; // 512 KiB: more than the initial memory
    const size = product(shape);
    const x = data(size, 7), dy = data(size, 8);
    const keep = engine.tensor(Float32Array.from([1, 2, 3, 4]));
    const keepView = keep.data;
    const grow = refuseGrow(engine);
    const memory = engine.info().memoryBytes;
    const layout = engine.arena.layout();
    const rm = new Float32Array(4), rv = new Float32Array(4).fill(1), out = new Float32Array(size);
    const bn = new BatchNorm(engine, 4);

    const e1 = expectError(() => engine.tensor(size), MemoryError, 'length', /refused/);
    expect((e1 as Error & { cause?: unknown }).cause).toBeInstanceOf(RangeError);
    expectError(() => engine.tensor(x), MemoryError, 'values', /refused/);
    expectError(() => engine.forward(x, shape, { training: true, runningMean: rm, runningVar: rv, out }), MemoryError, 'x', /memory\.grow\(\d+\) refused at \d+ bytes/);
    expectError(() => engine.backward(dy, x, shape, { training: true, saveMean: new Float32Array(4), saveInvStd: new Float32Array(4).fill(1), out }), MemoryError, 'dy');
    expectError(() => bn.forward(x, shape), MemoryError, 'x');
    expect(grow.refused()).toBeGreaterThanOrEqual(5);
    // Nothing changed: memory, allocations, running stats, outputs, inputs, the layer, live tensors and their views.
    expect(engine.info().memoryBytes).toBe(memory);
    expect(engine.arena.layout()).toEqual(layout);
    expect(rm).toEqual(new Float32Array(4));
    expect(rv).toEqual(new Float32Array(4).fill(1));
    sameBytes(out, new Float32Array(size), 'out');
    sameBytes(x, data(size, 7), 'x');
    expect(bn.numBatchesTracked).toBe(0);
    expect(keepView.length, 'a live view was detached by a failed call').toBe(4);
    expect(Array.from(keep.data)).toEqual([1, 2, 3, 4]);
    // Small calls that fit in the current memory still work while grow is refused.
    const small = data(64, 9);
    sameBytes(engine.forward(small, [16, 4], { training: true }).y, other.forward(small, [16, 4], { training: true }).y, 'small y');

    grow.restore();
    const r = engine.forward(x, shape, { training: true, runningMean: rm, runningVar: rv });
    const rmO = new Float32Array(4), rvO = new Float32Array(4).fill(1);
    const ref = other.forward(x, shape, { training: true, runningMean: rmO, runningVar: rvO });
    sameBytes(r.y, ref.y, 'y');
    expect(rm).toEqual(rmO);
    expect(rv).toEqual(rvO);
    const b = engine.backward(dy, x, shape, { training: true, saveMean: r.saveMean, saveInvStd: r.saveInvStd });
    sameBytes(b.dx, other.backward(dy, x, shape, { training: true, saveMean: r.saveMean, saveInvStd: r.saveInvStd }).dx, 'dx');
    sameBytes(bn.forward(x, shape), ref.y, 'layer y');
    expect(bn.numBatchesTracked).toBe(1);
    expect(Array.from(keep.data)).toEqual([1, 2, 3, 4]);
    keep.free();
    expect(engine.info().bytesInUse).toBe(0);
  });

  it('a refusal in the middle of zero-copy work: the call fails cleanly, the next one succeeds', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    const shape = [4, 8, 32, 32];
    const size = product(shape);
    const tx = engine.tensor(data(size, 10)), tout = engine.tensor(size);
    const before = tx.toArray();
    const grow = refuseGrow(engine, 1);
    // x resident, out plain: y needs scratch, which needs growth: refused once.
    const plainOut = new Float32Array(size).fill(7);
    expectError(() => engine.forward(tx.data, shape, { training: true, out: plainOut }), MemoryError, 'y');
    expect(plainOut.every((v) => v === 7)).toBe(true);
    sameBytes(tx.toArray(), before, 'x tensor');
    const r = engine.forward(tx.data, shape, { training: true, out: plainOut }); // grow allowed again
    expect(r.y).toBe(plainOut);
    expect(Array.from(plainOut).some((v) => v === 7)).toBe(false);
    expect(grow.refused()).toBe(1);
    grow.restore();
    tx.free();
    tout.free();
    expect(engine.info().bytesInUse).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Growth and views
// ---------------------------------------------------------------------------------------------
describe('memory growth never leaves a stale view without a clear error', () => {
  it('tensor.data is always live; old views are detached and rejected with MemoryError by every entry point', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    const t = engine.tensor(Float32Array.from([1, 2, 3, 4, 5, 6]));
    const old = t.data;
    const big = engine.tensor(2 ** 20); // grows memory
    expect(old.length).toBe(0); // detached by the growth
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(t.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    const detached = /^(\S+): expected a live (Float32Array|typed array), got a detached view \(wasm memory grew after the view was taken; read tensor\.data again\)$/;
    expectError(() => engine.forward(old, [3, 2], { training: true }), MemoryError, 'x', detached);
    expectError(() => engine.tensor(old), MemoryError, 'values', detached);
    expectError(() => t.set(old), MemoryError, 'values', detached);
    expectError(() => new BatchNorm(engine, 2).forward(old, [3, 2]), MemoryError, 'x', detached);
    big.free();
    t.free();
  });

  it('memory grown outside the engine (kernels.memory.grow): the next calls see the new buffer, zero-copy stays zero-copy', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    const x = engine.tensor(data(24, 7)), y = engine.tensor(24);
    const before = engine.forward(x.data, [4, 3, 2], { training: true, out: y.data }).y.slice();
    const stale = x.data;
    engine.kernels.memory.grow(1); // not through the arena: detaches every view, as any growth does
    expect(stale.length).toBe(0);
    expect(engine.arena.buffer).toBe(engine.kernels.memory.buffer);
    const r = engine.forward(x.data, [4, 3, 2], { training: true, out: y.data });
    expect(r.y).toBe(y.data); // resident: written in place, not copied through scratch
    sameBytes(r.y, before, 'y after the external growth');
    expectError(() => engine.forward(stale, [4, 3, 2], { training: true }), MemoryError, 'x');
    x.free();
    y.free();
  });

  it('engine.tensor(view of another tensor) copies correctly even when its own allocation grows memory', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    const src = engine.tensor(Float32Array.from({ length: 1000 }, (_, i) => i));
    const fill = engine.tensor(Math.floor((engine.info().memoryBytes - src.byteOffset - 8000) / 4));
    const memory = engine.info().memoryBytes;
    const copy = engine.tensor(src.data); // must grow: the view passed in is detached mid-call
    expect(engine.info().memoryBytes).toBeGreaterThan(memory);
    expect(copy.toArray()).toEqual(src.toArray());
    for (const t of [src, fill, copy]) t.free();
    expect(engine.info().bytesInUse).toBe(0);
  });

  it('engine.tensor and Tensor.set: typed arrays and arrays of numbers are converted; anything else is rejected before allocating', async () => {
    const engine = await createEngine({ simd: true, threads: 1 });
    expect(Array.from(engine.tensor(Float64Array.from([1.5, 2 ** 40, 1e-50])).data)).toEqual([1.5, 2 ** 40, 0]);
    expect(Array.from(engine.tensor([1, -2, 3]).data)).toEqual([1, -2, 3]);
    expect(Array.from(engine.tensor(Int16Array.from([-7, 9])).data)).toEqual([-7, 9]);
    const inUse = engine.info().bytesInUse;
    const bad: Array<[unknown, typeof BatchNormError, string]> = [
      ['abc', InvalidArgumentError, 'values'], [{ length: 3 }, InvalidArgumentError, 'values'], [[1, '2', 3], InvalidArgumentError, 'values[1]'],
      [[1, , 3], InvalidArgumentError, 'values[1]'], [new BigInt64Array(2), InvalidArgumentError, 'values'], [new DataView(new ArrayBuffer(8)), InvalidArgumentError, 'values'],
      [[], InvalidArgumentError, 'values'], [new Float32Array(0), InvalidArgumentError, 'values'], [null, InvalidArgumentError, 'values'], [undefined, InvalidArgumentError, 'values'],
      [0, InvalidArgumentError, 'length'], [-1, InvalidArgumentError, 'length'], [2.5, InvalidArgumentError, 'length'], [NaN, InvalidArgumentError, 'length'], [Infinity, InvalidArgumentError, 'length'],
    ];
    for (const [value, cls, argument] of bad) expectError(() => engine.tensor(value as never), cls, argument);
    expect(engine.info().bytesInUse).toBe(inUse);
    const t = engine.tensor(3);
    for (const [value, cls, argument] of bad.slice(0, 6)) expectError(() => t.set(value as never), cls, argument);
    expectError(() => t.set([1, 2]), InvalidArgumentError, 'values', /^values: expected length 3, got length 2$/);
    expect(Array.from(t.data)).toEqual([0, 0, 0]);
  });
});

describe('per-channel arguments in wasm memory are read and updated in place', () => {
  // Resident weight, bias and running statistics (forward) and weight, saveMean, saveInvStd
  // (backward) are passed to the kernels by address, not copied. The call pins them before its
  // scratch is allocated, so they must still read right when that allocation grows memory
  // (detaching every view): here a plain x of 2^20 values needs 4 MiB of scratch on an engine
  // that has not got it. Bits must equal the same call with plain arrays.
  it.each(['NCHW', 'NHWC'] as const)('%s: training, eval and backward give the bits of plain arrays, also when the call grows memory', async (layout) => {
    const shape = layout === 'NCHW' ? [4, 6, 256, 171] : [4, 256, 171, 6], C = 6, n = product(shape);
    const x = data(n, 41), dy = data(n, 42);
    const w = Float32Array.from([1.5, -0.5, 2, 1, 0.25, -3]), b = Float32Array.from([0.1, 0.2, -0.3, 0, 5, -1]);
    const rm0 = Float32Array.from([0.5, -1, 2, 0, 3, 1]), rv0 = Float32Array.from([1, 2, 0.5, 4, 1, 3]);
    const plain = await createEngine({ simd: true, threads: 1 }), engine = await createEngine({ simd: true, threads: 1 });
    const rmP = rm0.slice(), rvP = rv0.slice();
    const trainP = plain.forward(x, shape, { layout, training: true, weight: w, bias: b, runningMean: rmP, runningVar: rvP });
    const evalP = plain.forward(x, shape, { layout, training: false, weight: w, bias: b, runningMean: rmP, runningVar: rvP });
    const bwdP = plain.backward(dy, x, shape, { layout, training: true, weight: w, saveMean: trainP.saveMean, saveInvStd: trainP.saveInvStd });

    const tw = engine.tensor(w), tb = engine.tensor(b), trm = engine.tensor(rm0), trv = engine.tensor(rv0);
    const bytes = engine.info().memoryBytes;
    const train = engine.forward(x, shape, { layout, training: true, weight: tw.data, bias: tb.data, runningMean: trm.data, runningVar: trv.data });
    expect(engine.info().memoryBytes, 'the call grew memory').toBeGreaterThan(bytes);
    sameBytes(train.y, trainP.y, 'training y');
    sameBytes(train.saveMean, trainP.saveMean, 'saveMean');
    sameBytes(train.saveInvStd, trainP.saveInvStd, 'saveInvStd');
    sameBytes(trm.data, rmP, 'runningMean, updated in place');
    sameBytes(trv.data, rvP, 'runningVar, updated in place');
    const evalR = engine.forward(x, shape, { layout, training: false, weight: tw.data, bias: tb.data, runningMean: trm.data, runningVar: trv.data });
    sameBytes(evalR.y, evalP.y, 'eval y');
    const tsm = engine.tensor(train.saveMean), tsi = engine.tensor(train.saveInvStd);
    const bwd = engine.backward(dy, x, shape, { layout, training: true, weight: tw.data, saveMean: tsm.data, saveInvStd: tsi.data });
    sameBytes(bwd.dx, bwdP.dx, 'dx');
    sameBytes(bwd.dweight, bwdP.dweight, 'dweight');
    sameBytes(bwd.dbias, bwdP.dbias, 'dbias');
    sameBytes(tw.data, w, 'weight untouched');
    sameBytes(tsm.data, train.saveMean, 'saveMean untouched');
    plain.dispose();
    engine.dispose();
  });
});

describe('GroupNorm and InstanceNorm read resident per-channel arguments through live views', () => {
  // The ops read weight, bias, running and saved statistics in JS after the call's scratch is
  // allocated: views pinned first and taken afresh, so a call that grows memory (a plain x of 2^20
  // values on a fresh engine) reads them right. Bits must equal the same calls with plain arrays.
  it.each(['NCHW', 'NHWC'] as const)('%s: forward (SiLU), backward, InstanceNorm with running statistics, also when the call grows memory', async (layout) => {
    const shape = layout === 'NCHW' ? [4, 6, 256, 171] : [4, 256, 171, 6], C = 6, n = product(shape);
    const x = data(n, 81), dy = data(n, 82), w = data(C, 83), b = data(C, 84);
    const rm0 = data(C, 85), rv0 = Float32Array.from(data(C, 86), (v) => Math.abs(v) + 0.5);
    const plain = await createEngine({ simd: true, threads: 1 }), engine = await createEngine({ simd: true, threads: 1 });
    const gOpts = { groups: 3, layout, activation: 'silu' as const };
    const refG = groupNorm(plain, x, shape, { ...gOpts, weight: w, bias: b });
    const refGB = groupNormBackward(plain, dy, x, shape, { ...gOpts, weight: w, bias: b, saveMean: refG.saveMean, saveInvStd: refG.saveInvStd });
    const rmP = rm0.slice(), rvP = rv0.slice();
    const refI = instanceNorm(plain, x, shape, { layout, weight: w, bias: b, runningMean: rmP, runningVar: rvP });
    const [tw, tb, trm, trv, tsm, tsi] = [w, b, rm0, rv0, refG.saveMean, refG.saveInvStd].map((a) => engine.tensor(a));
    const bytes = engine.info().memoryBytes;
    const g = groupNorm(engine, x, shape, { ...gOpts, weight: tw.data, bias: tb.data });
    expect(engine.info().memoryBytes, 'the call grew memory').toBeGreaterThan(bytes);
    sameBytes(g.y, refG.y, 'group y');
    sameBytes(g.saveInvStd, refG.saveInvStd, 'group saveInvStd');
    const gb = groupNormBackward(engine, dy, x, shape, { ...gOpts, weight: tw.data, bias: tb.data, saveMean: tsm.data, saveInvStd: tsi.data });
    sameBytes(gb.dx, refGB.dx, 'group dx');
    sameBytes(gb.dweight, refGB.dweight, 'group dweight');
    const i = instanceNorm(engine, x, shape, { layout, weight: tw.data, bias: tb.data, runningMean: trm.data, runningVar: trv.data });
    sameBytes(i.y, refI.y, 'instance y');
    sameBytes(trm.data, rmP, 'instance runningMean, updated in place');
    sameBytes(trv.data, rvP, 'instance runningVar, updated in place');
    sameBytes(tw.data, w, 'weight untouched');
    plain.dispose();
    engine.dispose();
  });
});

describe('destinations for the per-channel outputs (saveMeanOut, saveInvStdOut, dweightOut, dbiasOut)', () => {
  // The forward writes saveMean/saveInvStd, the backward dweight/dbias, into the caller's arrays
  // when given (PyTorch's native_batch_norm.out): in place by the kernels when resident, copied
  // otherwise, returned as the caller's own objects; the bits are those of a call without them.
  // Shapes: the separate passes (NCHW and NHWC) and the channel-at-a-time NCHW path (planes of
  // 1024, 2 per channel); the last grows memory during the call (plain x of 2^20 values).
  const cases = [
    ['NCHW separate', 'NCHW', [4, 5, 7, 9]], ['NHWC', 'NHWC', [3, 6, 5, 5]], ['NCHW fused', 'NCHW', [2, 5, 32, 32]],
    ['NCHW separate, the call grows memory', 'NCHW', [4, 5, 256, 205]],
  ] as const;
  for (const build of ['simd', 'scalar'] as const) {
    it.each(cases)(`${build}: %s: resident and plain destinations give the bits of a call without them`, async (_name, layout, shape) => {
      const C = layout === 'NCHW' ? shape[1] : shape[3], n = product(shape);
      const x = data(n, 51), dy = data(n, 52), w = data(C, 53), b = data(C, 54);
      const engine = await createEngine({ simd: build === 'simd', threads: 1 });
      const rm0 = data(C, 55), rv0 = Float32Array.from(data(C, 56), Math.abs);
      const ref = engine.forward(x, shape, { layout, training: true, weight: w, bias: b, runningMean: rm0.slice(), runningVar: rv0.slice() });
      const refEval = engine.forward(x, shape, { layout, training: false, weight: w, bias: b, runningMean: rm0, runningVar: rv0 });
      const refBack = engine.backward(dy, x, shape, { layout, training: true, weight: w, saveMean: ref.saveMean, saveInvStd: ref.saveInvStd });
      for (const resident of [true, false]) {
        const what = resident ? 'resident' : 'plain';
        const dest = () => (resident ? engine.tensor(C).data : new Float32Array(C));
        const sm = dest(), si = dest(), dw = dest(), db = dest(), rm = rm0.slice(), rv = rv0.slice();
        const before = engine.info().memoryBytes;
        const f = engine.forward(x, shape, { layout, training: true, weight: w, bias: b, runningMean: rm, runningVar: rv, saveMeanOut: sm, saveInvStdOut: si });
        const grew = engine.info().memoryBytes > before;
        if (resident && grew) {
          expect(sm.length, 'the caller\'s view was detached by the growth').toBe(0);
          expect(f.saveMean.buffer).toBe(engine.arena.buffer);
        } else {
          expect(f.saveMean, `${what}: the caller's saveMeanOut is returned`).toBe(sm);
          expect(f.saveInvStd).toBe(si);
        }
        sameBytes(f.saveMean, ref.saveMean, `${what} saveMean`);
        sameBytes(f.saveInvStd, ref.saveInvStd, `${what} saveInvStd`);
        sameBytes(f.y, ref.y, `${what} y`);
        const em = dest();
        const e = engine.forward(x, shape, { layout, training: false, weight: w, bias: b, runningMean: rm0, runningVar: rv0, saveMeanOut: em });
        expect(e.saveMean).toBe(em);
        sameBytes(e.saveMean, refEval.saveMean, `${what} eval saveMean (the running mean)`);
        sameBytes(e.saveInvStd, refEval.saveInvStd, `${what} eval saveInvStd, returned new`);
        const g = engine.backward(dy, x, shape, { layout, training: true, weight: w, saveMean: f.saveMean, saveInvStd: f.saveInvStd, dweightOut: dw, dbiasOut: db });
        expect(g.dweight).toBe(dw);
        expect(g.dbias).toBe(db);
        sameBytes(g.dweight, refBack.dweight, `${what} dweight`);
        sameBytes(g.dbias, refBack.dbias, `${what} dbias`);
        sameBytes(g.dx, refBack.dx, `${what} dx`);
        const only = engine.backward(dy, x, shape, { layout, training: true, weight: w, saveMean: f.saveMean, saveInvStd: f.saveInvStd, dbiasOut: db });
        sameBytes(only.dweight, refBack.dweight, `${what} dweight, returned new`);
        expect(only.dbias).toBe(db);
      }
      engine.dispose();
    });
  }

  it('synchronized BN: forwardWithMoments and backwardWithSums write into the destinations too', async () => {
    const shape = [4, 6, 5, 3], C = 6, n = product(shape);
    const x = data(n, 61), dy = data(n, 62), w = data(C, 63);
    const engine = await createEngine({ simd: true, threads: 1 });
    const moments = engine.moments(x, shape);
    const ref = engine.forwardWithMoments(x, shape, { moments, weight: w });
    const sm = engine.tensor(C).data, si = new Float32Array(C);
    const f = engine.forwardWithMoments(x, shape, { moments, weight: w, saveMeanOut: sm, saveInvStdOut: si });
    expect(f.saveMean).toBe(sm);
    expect(f.saveInvStd).toBe(si);
    sameBytes(f.saveMean, ref.saveMean, 'saveMean');
    sameBytes(f.saveInvStd, ref.saveInvStd, 'saveInvStd');
    const sums = engine.backwardReduce(dy, x, shape, { saveMean: sm, saveInvStd: si });
    const all = { ...sums, count: moments.count, weight: w, saveMean: sm, saveInvStd: si };
    const refBack = engine.backwardWithSums(dy, x, shape, all);
    const dw = new Float32Array(C), db = engine.tensor(C).data;
    const g = engine.backwardWithSums(dy, x, shape, { ...all, dweightOut: dw, dbiasOut: db });
    expect(g.dweight).toBe(dw);
    expect(g.dbias).toBe(db);
    sameBytes(g.dweight, refBack.dweight, 'dweight');
    sameBytes(g.dbias, refBack.dbias, 'dbias');
    expectError(() => engine.backwardWithSums(dy, x, shape, { ...all, dweightOut: db, dbiasOut: db }), InvalidArgumentError, 'opts.dweightOut', /disjoint from opts.dbiasOut/);
    expectError(() => engine.forwardWithMoments(x, shape, { moments, weight: w, saveMeanOut: w }), InvalidArgumentError, 'opts.saveMeanOut', /disjoint from opts.weight/);
    engine.dispose();
  });

  it('a destination of the wrong length, overlapping another argument or read by the call is rejected, and nothing is written', async () => {
    const shape = [2, 4, 3, 3], C = 4, n = product(shape);
    const engine = await createEngine({ simd: true, threads: 1 });
    const t = engine.tensor(n + 3 * C);
    const x = t.data.subarray(0, n), after = t.data.subarray(n, n + C), rest = t.data.subarray(n + C);
    x.set(data(n, 71));
    const rm = data(C, 72), rv = Float32Array.from(data(C, 73), Math.abs), w = data(C, 74);
    const snapshot = () => [t.data.slice(), rm.slice(), rv.slice(), w.slice()];
    const same = (s: Float32Array[]) => { sameBytes(t.data, s[0], 'tensor'); sameBytes(rm, s[1], 'runningMean'); sameBytes(rv, s[2], 'runningVar'); sameBytes(w, s[3], 'weight'); };
    const s0 = snapshot();
    const fwd = (o: Record<string, unknown>) => () => engine.forward(x, shape, { training: true, runningMean: rm, runningVar: rv, weight: w, ...o });
    expectError(fwd({ saveMeanOut: new Float32Array(C + 1) }), ShapeError, 'opts.saveMeanOut', /length 4 \(C = 4 channels\)/);
    expectError(fwd({ saveInvStdOut: [0, 0, 0, 0] }), InvalidArgumentError, 'opts.saveInvStdOut');
    expectError(fwd({ saveMeanOut: after, saveInvStdOut: after }), InvalidArgumentError, 'opts.saveMeanOut', /disjoint from opts.saveInvStdOut/);
    expectError(fwd({ saveMeanOut: rm }), InvalidArgumentError, 'opts.saveMeanOut', /disjoint from opts.runningMean/);
    expectError(fwd({ saveInvStdOut: w }), InvalidArgumentError, 'opts.saveInvStdOut', /disjoint from opts.weight/);
    expectError(fwd({ saveMeanOut: x.subarray(n - C) }), InvalidArgumentError, 'opts.saveMeanOut', /disjoint from x/);
    expectError(fwd({ out: t.data.subarray(C, n + C), saveMeanOut: after }), InvalidArgumentError, 'opts.out', /disjoint from opts.saveMeanOut/);
    expectError(() => engine.forward(x, shape, { training: false, runningMean: rm, runningVar: rv, saveInvStdOut: rv }), InvalidArgumentError, 'opts.saveInvStdOut', /disjoint from opts.runningVar/);
    same(s0);
    const f = engine.forward(x, shape, { training: true });
    const bwd = (o: Record<string, unknown>) => () => engine.backward(x, x, shape, { training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd, weight: w, ...o });
    expectError(bwd({ dweightOut: new Float32Array(C - 1) }), ShapeError, 'opts.dweightOut');
    expectError(bwd({ dweightOut: rest.subarray(0, C), dbiasOut: rest.subarray(2, C + 2) }), InvalidArgumentError, 'opts.dweightOut', /disjoint from opts.dbiasOut/);
    expectError(bwd({ dbiasOut: w }), InvalidArgumentError, 'opts.dbiasOut', /disjoint from opts.weight/);
    expectError(bwd({ dweightOut: f.saveMean }), InvalidArgumentError, 'opts.dweightOut', /disjoint from opts.saveMean/);
    expectError(bwd({ out: t.data.subarray(C, n + C), dbiasOut: after }), InvalidArgumentError, 'opts.out', /disjoint from opts.dbiasOut/);
    same(s0);
    engine.dispose();
  });
});
