// The kernel registry: one description of every kernel the module exports (assembly/index.ts),
// its arguments with their units, and the element count of every pointer argument as a function
// of the others. From it come the TypeScript binding type (KernelExports), the checked binding
// the tests put around the debug build (every pointer range, alignment and count checked before
// the call), the kernel tests' enumeration and the bench's. Adding a kernel: write it in
// assembly/ (SIMD and scalar twins, one contract), export it from assembly/index.ts, add one
// entry here; the tests then check that the instance exports it with this arity and that it
// writes nothing outside the ranges declared here.

/** Values of a call's scalar arguments by name (pointer lengths are functions of them). */
export type ArgValues = Readonly<Record<string, number>>;

export type ArgSpec =
  /** A byte pointer to `length(args)` elements of f32 or f64; `nullable`: 0 means absent. */
  | { readonly name: string; readonly kind: 'f32[]' | 'f64[]'; readonly access: 'read' | 'write' | 'readwrite';
    readonly length: (a: ArgValues) => number; readonly nullable?: boolean; readonly doc?: string }
  /** An element count, >= 1. */
  | { readonly name: string; readonly kind: 'count'; readonly doc?: string }
  /** A block index, >= 0 (ranges [b0, b1) of a partition). */
  | { readonly name: string; readonly kind: 'index'; readonly doc?: string }
  /** A number passed by value (f64 or f32), or a flag. */
  | { readonly name: string; readonly kind: 'f64' | 'f32' | 'bool'; readonly doc?: string };

export interface KernelSpec {
  /** The assembly/ file that implements it. */
  readonly file: string;
  /** 'rows': [rows][C] with statistics per row and parameters per column (LayerNorm, RMSNorm). */
  readonly layout: 'NCHW' | 'channels-last' | 'per-channel' | 'rows';
  readonly doc: string;
  readonly args: readonly ArgSpec[];
}

// ---------------------------------------------------------------------------------------------
// Partition and workspace arithmetic shared by the kernels' contracts and the plans (in float64:
// a size is never read back from wasm as a 32-bit value).

/** Blocks per channel of the NCHW statistics partition (assembly/stats.ts) for `block` values per block. */
export function blocksNchw(outer: number, inner: number, block: number): number {
  const segments = inner > block ? Math.ceil(inner / block) : 1;
  const planes = inner >= block ? 1 : Math.floor(block / inner);
  return segments * Math.ceil(outer / planes);
}

/** Blocks per channel of the channels-last partition: groups of `block` rows. */
export function blocksRows(rows: number, block: number): number {
  return Math.ceil(rows / block);
}

/**
 * Bytes of scratch a channels-last kernel needs (assembly/period.ts): 3 f64 arrays of the period
 * L = lcm(C, 4) (statistics, reductions) or 4 f32 arrays of the apply loops' super-row (the
 * period repeated to at least 64 values).
 */
export function workspaceBytes(C: number): number {
  const L = C % 4 === 0 ? C : C % 2 === 0 ? 2 * C : 4 * C;
  const row = L >= 64 ? L : L * Math.floor((63 + L) / L);
  return Math.max(24 * L, 16 * row);
}

// ---------------------------------------------------------------------------------------------
// Argument constructors (lengths in elements; `work` in bytes of f32 is workspaceBytes / 4).

const f32 = (name: string, access: 'read' | 'write' | 'readwrite', length: (a: ArgValues) => number, nullable = false) =>
  ({ name, kind: 'f32[]', access, length, nullable }) as const;
const f64 = (name: string, access: 'read' | 'write' | 'readwrite', length: (a: ArgValues) => number) =>
  ({ name, kind: 'f64[]', access, length }) as const;
const count = (name: string) => ({ name, kind: 'count' }) as const;
const index = (name: string) => ({ name, kind: 'index' }) as const;
const num = (name: string, kind: 'f64' | 'f32' | 'bool') => ({ name, kind }) as const;

const nchw = (a: ArgValues) => a.outer * a.C * a.inner;
const rows = (a: ArgValues) => a.rows * a.C;
const perC = (a: ArgValues) => a.C;
const work = (a: ArgValues) => workspaceBytes(a.C) / 4;
/** Partials of blocks [0, b1): 4 f64 fields (count | pivot | offset | m2) of C per block. */
const partialsTo = (a: ArgValues) => 4 * a.C * a.b1;
/** Row-normalization partials: 4 f64 fields per statistics block (segment) of every row. */
const rowPartials = (a: ArgValues) => 4 * blocksNchw(1, a.C, a.block) * a.rows;
const perRow = (a: ArgValues) => a.rows;
/** The arguments the row-normalization forward kernels share (RMSNorm's without `block`), and LayerNorm's statistics. */
const rowsIn = [f32('x', 'read', rows), f32('residual', 'read', rows, true), f32('sum', 'write', rows, true),
  f32('y', 'write', rows), count('rows'), count('C'), count('block')] as const;
const rowsStats = [f64('mean', 'write', perRow), f64('m2', 'write', perRow), f64('partials', 'write', rowPartials)] as const;
/** Backward partials of blocks [0, b1): 2 f64 fields (Σg | Σg·(x − mean)) of C per block. */
const sumsPartialsTo = (a: ArgValues) => 2 * a.C * a.b1;

export const KERNELS = {
  statsNchwF32: {
    file: 'stats.ts', layout: 'NCHW',
    doc: 'Block partials (count | pivot | offset | m2, f64[C] each) of statistics blocks [b0, b1).',
    args: [f32('x', 'read', nchw), count('outer'), count('C'), count('inner'), count('block'), index('b0'), index('b1'),
      f64('partials', 'readwrite', partialsTo)],
  },
  statsNhwcF32: {
    file: 'stats.ts', layout: 'channels-last',
    doc: 'Block partials of statistics blocks [b0, b1) of `block` rows each.',
    args: [f32('x', 'read', rows), count('rows'), count('C'), count('block'), index('b0'), index('b1'),
      f64('partials', 'readwrite', partialsTo), f32('work', 'readwrite', work)],
  },
  mergeMomentsF64: {
    file: 'stats.ts', layout: 'per-channel',
    doc: "Each channel's block partials merged in block order (Chan's update) into f64 mean[C], m2[C].",
    args: [f64('partials', 'read', (a) => 4 * a.C * a.blocks), count('blocks'), count('C'),
      f64('mean', 'write', perC), f64('m2', 'write', perC)],
  },
  normalizeNchwF32: {
    file: 'normalize.ts', layout: 'NCHW',
    doc: "y = max'((x − meanHi)·scale + shift, lower); lower 0 fuses ReLU, −Infinity applies none. y may be x.",
    args: [f32('x', 'read', nchw), f32('y', 'write', nchw), count('outer'), count('C'), count('inner'),
      f32('meanHi', 'read', perC), f32('scale', 'read', perC), f32('shift', 'read', perC), num('lower', 'f32')],
  },
  normalizeNhwcF32: {
    file: 'normalize.ts', layout: 'channels-last',
    doc: "y = max'((x − meanHi)·scale + shift, lower) over [rows][C]. y may be x.",
    args: [f32('x', 'read', rows), f32('y', 'write', rows), count('rows'), count('C'),
      f32('meanHi', 'read', perC), f32('scale', 'read', perC), f32('shift', 'read', perC), f32('work', 'readwrite', work),
      num('lower', 'f32')],
  },
  backwardReduceNchwF32: {
    file: 'backward.ts', layout: 'NCHW',
    doc: 'Partials (Σg | Σg·(x − mean), f64[C] each) of blocks [b0, b1) of the statistics partition; g = dy, masked by the fused ReLU output y unless y = 0.',
    args: [f32('dy', 'read', nchw), f32('x', 'read', nchw), count('outer'), count('C'), count('inner'),
      f32('mean', 'read', perC), count('block'), index('b0'), index('b1'), f64('partials', 'readwrite', sumsPartialsTo),
      f32('y', 'read', nchw, true)],
  },
  backwardReduceNhwcF32: {
    file: 'backward.ts', layout: 'channels-last',
    doc: 'Backward partials of blocks [b0, b1) of `block` rows each, over [rows][C].',
    args: [f32('dy', 'read', rows), f32('x', 'read', rows), count('rows'), count('C'),
      f32('mean', 'read', perC), count('block'), index('b0'), index('b1'), f64('partials', 'readwrite', sumsPartialsTo),
      f32('work', 'readwrite', work), f32('y', 'read', rows, true)],
  },
  mergeSumsF64: {
    file: 'backward.ts', layout: 'per-channel',
    doc: "Each channel's backward partials added in block order into f64 sumDy[C], sumDyXmu[C].",
    args: [f64('partials', 'read', (a) => 2 * a.C * a.blocks), count('blocks'), count('C'),
      f64('sumDy', 'write', perC), f64('sumDyXmu', 'write', perC)],
  },
  backwardDxNchwF32: {
    file: 'backward.ts', layout: 'NCHW',
    doc: 'dx = ((g − k1) − (x − mean)·k2)·k3 (training) or (g − k1)·k3 (eval). dx may be dy or x.',
    args: [f32('dy', 'read', nchw), f32('x', 'read', nchw), f32('dx', 'write', nchw), count('outer'), count('C'), count('inner'),
      f32('mean', 'read', perC), f32('k1', 'read', perC), f32('k2', 'read', perC), f32('k3', 'read', perC), num('training', 'bool'),
      f32('y', 'read', nchw, true)],
  },
  backwardDxNhwcF32: {
    file: 'backward.ts', layout: 'channels-last',
    doc: 'dx over [rows][C], as backwardDxNchwF32.',
    args: [f32('dy', 'read', rows), f32('x', 'read', rows), f32('dx', 'write', rows), count('rows'), count('C'),
      f32('mean', 'read', perC), f32('k1', 'read', perC), f32('k2', 'read', perC), f32('k3', 'read', perC),
      f32('work', 'readwrite', work), num('training', 'bool'), f32('y', 'read', rows, true)],
  },
  forwardTrainNchwF32: {
    file: 'fused.ts', layout: 'NCHW',
    doc: 'Training forward one channel at a time, channels [c0, c1): block-partial statistics (as statsNchwF32 + mergeMomentsF64), then the apply.',
    args: [f32('x', 'read', nchw), f32('y', 'write', nchw), count('outer'), count('C'), count('inner'), count('block'), index('c0'), index('c1'),
      f32('gamma', 'read', perC, true), f32('beta', 'read', perC, true), num('eps', 'f64'),
      f64('mean', 'write', perC), f64('m2', 'write', perC), f64('invStd', 'write', perC), num('lower', 'f32')],
  },
  backwardNchwF32: {
    file: 'fused.ts', layout: 'NCHW',
    doc: 'Backward one channel at a time, channels [c0, c1): the sums (block partials merged as mergeSumsF64), then dx.',
    args: [f32('dy', 'read', nchw), f32('x', 'read', nchw), f32('dx', 'write', nchw), count('outer'), count('C'), count('inner'), count('block'), index('c0'), index('c1'),
      f32('mean', 'read', perC), f32('invStd', 'read', perC), f32('gamma', 'read', perC, true), num('training', 'bool'),
      f64('sumDy', 'write', perC), f64('sumDyXmu', 'write', perC), f32('y', 'read', nchw, true)],
  },
  foldF32: {
    file: 'fold.ts', layout: 'per-channel',
    doc: 'invStd = 1/sqrt(v/divisor + eps), meanHi, scale, shift per channel (the apply parameters).',
    args: [count('C'), f64('mean', 'read', perC), f64('v', 'read', perC), num('divisor', 'f64'), num('eps', 'f64'),
      f32('gamma', 'read', perC, true), f32('beta', 'read', perC, true), f32('meanHi', 'write', perC), f32('scale', 'write', perC),
      f32('shift', 'write', perC), f64('invStd', 'write', perC)],
  },
  narrowF64: {
    file: 'fold.ts', layout: 'per-channel',
    doc: 'dst = f32(src), round to nearest.',
    args: [f64('src', 'read', perC), count('C'), f32('dst', 'write', perC)],
  },
  widenF32: {
    file: 'fold.ts', layout: 'per-channel',
    doc: 'dst = f64(src), exact.',
    args: [f32('src', 'read', perC), count('C'), f64('dst', 'write', perC)],
  },
  updateRunningF32: {
    file: 'fold.ts', layout: 'per-channel',
    doc: 'running = (1 − m)·running + m·batch (var: m2/divisor), in f64, rounded once.',
    args: [count('C'), f64('mean', 'read', perC), f64('m2', 'read', perC), num('divisor', 'f64'), num('momentum', 'f64'),
      f32('rm', 'readwrite', perC), f32('rv', 'readwrite', perC)],
  },
  foldBackwardF32: {
    file: 'fold.ts', layout: 'per-channel',
    doc: 'k1, k2, k3, dweight, dbias per channel from the backward sums.',
    args: [count('C'), f64('sumDy', 'read', perC), f64('s2', 'read', perC), num('xmu', 'bool'), f32('invStd', 'read', perC),
      f32('gamma', 'read', perC, true), num('n', 'f64'), num('training', 'bool'), f32('k1', 'write', perC), f32('k2', 'write', perC),
      f32('k3', 'write', perC), f32('dweight', 'write', perC), f32('dbias', 'write', perC)],
  },
  layerNormRowsF32: {
    file: 'rows.ts', layout: 'rows',
    doc: 'LayerNorm forward: per-row f64 statistics (statsNchwF32 + mergeMomentsF64 on chunks of rows), y = (((v − meanHi) − meanLo)·invStd)·w + b, v = x or the written sum = x + residual.',
    args: [...rowsIn, f32('weight', 'read', perC, true), f32('bias', 'read', perC, true), num('eps', 'f64'), ...rowsStats,
      f32('saveMean', 'write', perRow), f32('saveInvStd', 'write', perRow)],
  },
  rmsNormRowsF32: {
    file: 'rows.ts', layout: 'rows',
    doc: 'RMSNorm forward: invRms = 1/sqrt(Σv²/C + eps) (Σv² in f64 per row), y = (v·invRms)·w.',
    args: [...rowsIn.slice(0, -1), f32('weight', 'read', perC, true), num('eps', 'f64'), f32('saveInvRms', 'write', perRow)],
  },
  layerNormBackwardRowsF32: {
    file: 'rows.ts', layout: 'rows',
    doc: 'LayerNorm backward of row blocks [b0, b1): dx per row from Σw·dy, Σw·dy·(x − mean) (f64); each block\'s f64 partial [dweight | dbias].',
    args: [f32('dy', 'read', rows), f32('x', 'read', rows), f32('dx', 'write', rows), count('rows'), count('C'),
      f32('weight', 'read', perC, true), f32('mean', 'read', perRow), f32('invStd', 'read', perRow),
      count('blockRows'), index('b0'), index('b1'), f64('partials', 'write', sumsPartialsTo)],
  },
  rmsNormBackwardRowsF32: {
    file: 'rows.ts', layout: 'rows',
    doc: 'RMSNorm backward of row blocks [b0, b1): dx per row from Σw·dy·x (f64); each block\'s f64 partial [dweight | 0].',
    args: [f32('dy', 'read', rows), f32('x', 'read', rows), f32('dx', 'write', rows), count('rows'), count('C'),
      f32('weight', 'read', perC, true), f32('invRms', 'read', perRow),
      count('blockRows'), index('b0'), index('b1'), f64('partials', 'write', sumsPartialsTo)],
  },
  normalizeSiluNchwF32: {
    file: 'groups.ts', layout: 'NCHW',
    doc: 'y = z·σ(z), z = (x − meanHi)·scale + shift (GroupNorm + SiLU). y may be x.',
    args: [f32('x', 'read', nchw), f32('y', 'write', nchw), count('outer'), count('C'), count('inner'),
      f32('meanHi', 'read', perC), f32('scale', 'read', perC), f32('shift', 'read', perC)],
  },
  normalizeSiluNhwcF32: {
    file: 'groups.ts', layout: 'channels-last',
    doc: 'y = z·σ(z), z = (x − meanHi)·scale + shift over [rows][C]. y may be x.',
    args: [f32('x', 'read', rows), f32('y', 'write', rows), count('rows'), count('C'),
      f32('meanHi', 'read', perC), f32('scale', 'read', perC), f32('shift', 'read', perC), f32('work', 'readwrite', work)],
  },
  siluBackwardNchwF32: {
    file: 'groups.ts', layout: 'NCHW',
    doc: 'dz = dy·σ(z)·(1 + z·(1 − σ(z))), z recomputed as normalizeSiluNchwF32 does. dz may be dy or x.',
    args: [f32('dy', 'read', nchw), f32('x', 'read', nchw), f32('dz', 'write', nchw), count('outer'), count('C'), count('inner'),
      f32('meanHi', 'read', perC), f32('scale', 'read', perC), f32('shift', 'read', perC)],
  },
  siluBackwardNhwcF32: {
    file: 'groups.ts', layout: 'channels-last',
    doc: 'dz = dy·σ(z)·(1 + z·(1 − σ(z))) over [rows][C]. dz may be dy or x.',
    args: [f32('dy', 'read', rows), f32('x', 'read', rows), f32('dz', 'write', rows), count('rows'), count('C'),
      f32('meanHi', 'read', perC), f32('scale', 'read', perC), f32('shift', 'read', perC), f32('work', 'readwrite', work)],
  },
  groupNormDxNchwF32: {
    file: 'groups.ts', layout: 'NCHW',
    doc: 'dx = (dy·k3 − k1) − (x − mean)·k2 (GroupNorm / InstanceNorm dx per (n, c)). dx may be dy or x.',
    args: [f32('dy', 'read', nchw), f32('x', 'read', nchw), f32('dx', 'write', nchw), count('outer'), count('C'), count('inner'),
      f32('mean', 'read', perC), f32('k1', 'read', perC), f32('k2', 'read', perC), f32('k3', 'read', perC)],
  },
  groupNormDxNhwcF32: {
    file: 'groups.ts', layout: 'channels-last',
    doc: 'dx = (dy·k3 − k1) − (x − mean)·k2 over [rows][C]. dx may be dy or x.',
    args: [f32('dy', 'read', rows), f32('x', 'read', rows), f32('dx', 'write', rows), count('rows'), count('C'),
      f32('mean', 'read', perC), f32('k1', 'read', perC), f32('k2', 'read', perC), f32('k3', 'read', perC), f32('work', 'readwrite', work)],
  },
  mergeGroupMomentsF64: {
    file: 'groups.ts', layout: 'per-channel',
    doc: 'Moments (f64 mean, m2) of `outer` groups of C consecutive channels from channels-last block partials of outer·C channels.',
    args: [f64('partials', 'read', (a) => 4 * a.outer * a.C * a.blocks), count('blocks'), count('outer'), count('C'),
      f64('mean', 'write', (a) => a.outer), f64('m2', 'write', (a) => a.outer)],
  },
} as const satisfies Record<string, KernelSpec>;

export type KernelName = keyof typeof KERNELS;
export const KERNEL_NAMES = Object.keys(KERNELS) as KernelName[];

/** One number (or flag) per argument: a mapped tuple (A is a type parameter, so the mapping keeps the tuple). */
type Numbers<A extends readonly unknown[]> = { -readonly [I in keyof A]: number | boolean };
/** A kernel's binding: one number (or flag) per argument of its spec, in order. */
type Binding<S extends KernelSpec> = (...args: Numbers<S['args']>) => void;

/** The module's exports: the registry's kernels plus the memory and two probes. */
export type KernelExports = { readonly [K in KernelName]: Binding<(typeof KERNELS)[K]> } & {
  readonly memory: WebAssembly.Memory;
  /** First byte the host may use. */
  heapBase(): number;
  /** The build's SIMD level: 2 relaxed-simd, 1 simd (and debug), 0 scalar (builds.ts, simdFlag). */
  simdEnabled(): number;
};

/** Named values of one call's arguments (flags as 0/1), for checks and messages. */
export function namedArgs(name: KernelName, args: ReadonlyArray<number | boolean>): Record<string, number> {
  const out: Record<string, number> = {};
  KERNELS[name].args.forEach((a, i) => { out[a.name] = Number(args[i]); });
  return out;
}

/**
 * The exports with every call checked against the registry first: arity, counts >= 1, indices
 * >= 0, pointers 4-byte aligned, at or above heapBase, and [ptr, ptr + bytes) inside memory.
 * A violation throws an Error naming the kernel, the argument and the values. Tests wrap the
 * debug build with it (whose own assertions then check the kernels' inner invariants).
 */
export function checkedKernels(k: KernelExports): KernelExports {
  const out: Record<string, unknown> = { memory: k.memory, heapBase: () => k.heapBase(), simdEnabled: () => k.simdEnabled() };
  const base = k.heapBase();
  for (const name of KERNEL_NAMES) {
    const spec = KERNELS[name] as KernelSpec;
    const raw = k[name] as unknown as (...args: Array<number | boolean>) => void;
    out[name] = (...args: Array<number | boolean>) => {
      const fail = (what: string) => { throw new Error(`${name}: ${what} (${JSON.stringify(namedArgs(name, args))})`); };
      if (args.length !== spec.args.length) fail(`expected ${spec.args.length} arguments, got ${args.length}`);
      const v = namedArgs(name, args);
      const end = k.memory.buffer.byteLength;
      for (const a of spec.args) {
        const x = v[a.name];
        if (a.kind === 'count' && !(Number.isInteger(x) && x >= 1)) fail(`${a.name} must be a count >= 1`);
        if (a.kind === 'index' && !(Number.isInteger(x) && x >= 0)) fail(`${a.name} must be an index >= 0`);
        if (a.kind !== 'f32[]' && a.kind !== 'f64[]') continue;
        if (x === 0 && a.nullable) continue;
        const bytes = a.length(v) * (a.kind === 'f32[]' ? 4 : 8);
        if (x % 4 !== 0) fail(`${a.name} is not 4-byte aligned`);
        if (x < base) fail(`${a.name} points below the heap`);
        if (x + bytes > end) fail(`${a.name}: [${x}, ${x + bytes}) runs past the end of memory (${end})`);
      }
      raw(...args);
    };
  }
  return out as unknown as KernelExports;
}
