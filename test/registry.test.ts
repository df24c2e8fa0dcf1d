// The kernel registry (src/wasm/kernels.ts) against every build of the build table
// (src/wasm/builds.ts): each instance exports exactly the registry's kernels with the registry's
// arity, and every kernel, called with each of its pointer arguments in turn placed flush with
// the end of memory, writes nothing outside the ranges the registry declares for its written
// arguments and changes nothing it only reads (canary bytes around every range). Generated from
// the registry: a new kernel is covered by adding its entry.
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine.js';
import { InvalidArgumentError } from '../src/errors.js';
import { BUILDS as BUILD_TABLE, BUILD_NAMES } from '../src/wasm/builds.js';
import { KERNELS, KERNEL_NAMES, blocksNchw, blocksRows, type ArgSpec, type ArgValues, type KernelName } from '../src/wasm/kernels.js';
import { BUILDS, makeEngine, runnable, skipBuild, unsupported, type BuildName } from './helpers/engines.js';
import { rng } from './helpers/numeric.js';

/** Scalar arguments by name for one call on outer = 2, C = 3, inner = 5 (rows = 10), blocks of 4. */
function scalars(name: KernelName): ArgValues {
  const outer = 2, C = 3, inner = 5, rows = outer * inner, block = 4;
  // Row blocks of `blockRows` rows (the row norms' backward), of `block` rows (channels-last), else the NCHW partition.
  const byRows = (KERNELS[name].args as readonly ArgSpec[]).some((a) => a.name === 'blockRows');
  const blocks = byRows ? blocksRows(rows, 4) : KERNELS[name].layout === 'channels-last' ? blocksRows(rows, block) : blocksNchw(outer, inner, block);
  return {
    outer, C, inner, rows, block, blockRows: 4, b0: 0, b1: blocks, c0: 0, c1: C, blocks: 3,
    training: 1, xmu: 1, eps: 1e-5, lower: 0, divisor: 9, momentum: 0.1, n: rows,
  };
}

const CANARY = 64; // bytes of 0xA5 before and after every range
const pointerArgs = (name: KernelName) => (KERNELS[name].args as readonly ArgSpec[]).filter((a) => a.kind === 'f32[]' || a.kind === 'f64[]');

describe('the build table and the registry agree with the modules', () => {
  it('createEngine({ build }) pins each build of the table (a typed error where it cannot run); other values and a contradicting simd are typed errors', async () => {
    for (const build of BUILD_NAMES) {
      if (unsupported(build) !== null) {
        await expect(createEngine({ build })).rejects.toMatchObject({ argument: 'options.build' });
        continue;
      }
      const engine = await createEngine({ build });
      expect(engine.info()).toMatchObject({ build, simd: BUILD_TABLE[build].features.includes('simd') });
    }
    expect(runnable(BUILD_NAMES)).toContain('simd');
    await expect(createEngine({ build: 'relaxed' as never })).rejects.toThrow(InvalidArgumentError);
    await expect(createEngine({ build: 'relaxed' as never })).rejects.toMatchObject({ argument: 'options.build' });
    await expect(createEngine({ build: 'scalar', simd: true })).rejects.toMatchObject({ argument: 'options.simd' });
    await expect(createEngine({ build: 'relaxed-simd', simd: false })).rejects.toMatchObject({ argument: 'options.simd' });
    expect((await createEngine({ build: 'simd', simd: true })).build).toBe('simd');
  });

  it('the table: most capable first, each build falls back to the next, simdEnabled levels distinct', () => {
    expect(BUILD_NAMES).toEqual(['relaxed-simd', 'simd', 'scalar']);
    BUILD_NAMES.forEach((b, i) => expect(BUILD_TABLE[b].fallback).toBe(BUILD_NAMES[i + 1] ?? null));
    expect(new Set(BUILD_NAMES.map((b) => BUILD_TABLE[b].simdFlag)).size).toBe(BUILD_NAMES.length);
    for (const b of BUILD_NAMES) expect(BUILD_TABLE[b].url().pathname).toMatch(new RegExp(`/build/batchnorm\\.${b}\\.wasm$`));
  });

  it('bench/kernels.mjs enumerates the registry: every kernel runs on some bench case with every argument it declares, its ranges whole', async () => {
    const { scalars, applies } = await import('../bench/kernel-args.mjs');
    const { selectCases } = await import('../bench/shapes.mjs');
    const cases = selectCases();
    for (const name of KERNEL_NAMES) {
      const spec = KERNELS[name];
      const on = cases.filter((c: unknown) => applies(spec, c));
      expect(on.length, `${name}: bench cases`).toBeGreaterThan(0);
      for (const c of on) {
        const v = scalars(spec, c); // throws on an argument it has no value for
        const names = spec.args.map((a) => a.name);
        if (names.includes('b1')) expect(v.b1, `${name} on ${c.id}: blocks`).toBeGreaterThan(v.b0);
        if (names.includes('c1')) expect(v.c1, `${name} on ${c.id}: channels`).toBe(c.C);
        if (names.includes('blockRows')) expect(v.blockRows * v.b1, `${name} on ${c.id}: rows`).toBeGreaterThanOrEqual(v.rows);
      }
    }
  });

  it.for(BUILD_NAMES)('%s: exports exactly the registry\'s kernels, with their arity, and its simdEnabled flag', async (build, ctx) => {
    ctx.skip(unsupported(build) !== null, unsupported(build) ?? '');
    const engine = await makeEngine(build);
    const exports = Object.keys(engine.kernels).sort();
    expect(exports).toEqual([...KERNEL_NAMES, 'heapBase', 'memory', 'simdEnabled'].sort());
    for (const name of KERNEL_NAMES) {
      expect((engine.kernels[name] as unknown as (...a: unknown[]) => void).length, name).toBe(KERNELS[name].args.length);
    }
    expect(engine.kernels.simdEnabled()).toBe(BUILD_TABLE[build].simdFlag);
  });
});

describe.each(BUILDS)('every registry kernel writes only its declared ranges, %s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it.each(KERNEL_NAMES)('%s, each pointer argument flush with the end of memory', (name) => {
    const spec = KERNELS[name];
    const v = scalars(name);
    const ptrs = pointerArgs(name);
    for (const flush of ptrs) {
      const bytes = ptrs.map((a) => a.length(v) * (a.kind === 'f32[]' ? 4 : 8));
      const span = bytes.reduce((s, b) => s + b + 8 + 2 * CANARY, 0);
      // Owned memory reaching exactly the end of memory (a block, then a filler up to the end):
      // ranges are placed backwards from the end, the flushed one last, each 8-aligned.
      const arena = engine.arena;
      const block = arena.alloc(span + 4096);
      const filler = arena.alloc(arena.buffer.byteLength - (block + span + 4096) + span);
      const order = [...ptrs.filter((a) => a !== flush), flush];
      const at = new Map<string, number>();
      let cursor = arena.buffer.byteLength;
      for (const a of [...order].reverse()) {
        if (a !== flush) cursor -= CANARY;
        cursor -= bytes[ptrs.indexOf(a)];
        if (a !== flush) cursor -= cursor % 8;
        at.set(a.name, cursor);
        cursor -= CANARY;
      }
      const start = cursor - (cursor % 8);
      expect(start).toBeGreaterThanOrEqual(block);
      // Every byte from start to the end is a canary until the ranges are filled (the flushed range
      // has no trailing canary: it ends the memory).
      const mem = new Uint8Array(arena.buffer);
      mem.fill(0xa5, start, arena.buffer.byteLength);
      const next = rng(name.length * 31 + order.length);
      for (const a of ptrs) {
        const n = a.length(v), q = at.get(a.name)!;
        const view = a.kind === 'f32[]' ? new Float32Array(arena.buffer, q, n) : new Float64Array(arena.buffer, q, n);
        for (let i = 0; i < n; i++) view[i] = 0.5 + next() * 4; // positive: valid counts, variances, invStd
        if (a.name === 'partials' && a.kind === 'f64[]') for (let i = 0; i < n; i += 4 * v.C) view.fill(4, i, i + v.C); // counts
      }
      const before = mem.slice(start);
      const args = spec.args.map((a) => (a.kind === 'f32[]' || a.kind === 'f64[]' ? at.get(a.name)! : v[a.name]));
      (engine.kernels[name] as unknown as (...a: number[]) => void)(...args);
      const after = new Uint8Array(arena.buffer).slice(start);
      const written = ptrs.filter((a) => a.access !== 'read').map((a) => [at.get(a.name)! - start, at.get(a.name)! - start + bytes[ptrs.indexOf(a)]]);
      for (let i = 0; i < after.length; i++) {
        if (after[i] === before[i] || written.some(([lo, hi]) => i >= lo && i < hi)) continue;
        const owner = order.find((a) => i + start >= at.get(a.name)! - CANARY && i + start < at.get(a.name)! + bytes[ptrs.indexOf(a)] + CANARY);
        throw new Error(`${name} (${build}), ${flush.name} flush: byte ${i + start} changed, ${owner ? `near ${owner.name} (${owner.access})` : 'outside every range'}`);
      }
      arena.release(filler);
      arena.release(block);
    }
  });
});

describe('the registry\'s checked binding (the tests\' debug engine)', () => {
  it('rejects a range past the end of memory, a misaligned pointer and a zero count, naming kernel and argument', async () => {
    const engine = await makeEngine('debug');
    const end = engine.arena.buffer.byteLength;
    const p = engine.arena.alloc(256);
    expect(() => engine.kernels.narrowF64(end - 8, 2, p)).toThrow(/^narrowF64: src: \[\d+, \d+\) runs past the end of memory/);
    expect(() => engine.kernels.narrowF64(p + 2, 1, p + 64)).toThrow(/^narrowF64: src is not 4-byte aligned/);
    expect(() => engine.kernels.narrowF64(p, 0, p + 64)).toThrow(/^narrowF64: C must be a count >= 1/);
    expect(() => engine.kernels.statsNchwF32(p, 1, 1, 4, 4, -1, 1, p + 64)).toThrow(/^statsNchwF32: b0 must be an index >= 0/);
    engine.arena.release(p);
  });
});
