// Plans: everything about a call that depends only on (op, shape, layout, flags), computed once
// and cached: the geometry, the kernel path, the statistics partition, and the layout of the
// call's workspace (byte offsets into one allocation). A call then checks its arguments, pins
// them, allocates the workspace (and copies of non-resident inputs) and runs the plan's path.
// Folded per-channel parameters are not cached: folding is O(C) in wasm, less than copying the
// parameters in, and a cache would have to compare the caller's arrays (which they may change in
// place) at the same O(C) cost.
import type { Geometry } from './layout.js';
import { STATS_BLOCK, channelsLast, statsBlocks, workspaceBytes } from './exec.js';
import { blocksNchw, blocksRows } from './wasm/kernels.js';

/**
 * When the channel-at-a-time NCHW kernels (assembly/fused.ts) run instead of the separate
 * passes: planes of at least FUSED_MIN_INNER values and at most FUSED_MAX_OUTER of them per
 * channel. Their win is reading a channel twice while it is in cache; their cost is jumping
 * C·inner·4 bytes between a channel's planes, which small planes (ResNet's 7×7, BatchNorm1d's
 * N,C,L with short L) turn into a latency-bound walk (an Intel Xeon measured separate passes
 * faster at 784 values, 28×28, fused ones at 3136, 56×56) and many planes per channel into one
 * stream restart per plane. Measured on an AMD EPYC (Zen 4, Node 24, fused ÷ separate, training
 * and backward): 8 to 32 planes per channel 1.28–1.68× slower (32×64×56×56, 32×256×56×56,
 * 16×64×56×56, 32×32×32×32), 4 planes 0.99–1.08×, 1–2 planes 0.91–1.04× (the backward of a
 * 16–33 MB tensor 0.91–0.96×: the second read from cache). Otherwise the separate passes stream
 * in memory order; both paths give the same bits (assembly/stats.ts).
 */
const FUSED_MIN_INNER = 1024;
const FUSED_MAX_OUTER = 2;

function fusedNchw(g: Geometry): boolean {
  return g.inner >= FUSED_MIN_INNER && g.outer <= FUSED_MAX_OUTER;
}

/** Regions of one workspace: name -> byte offset, plus the total. Every region 64-byte aligned. */
export type Regions<K extends string> = { readonly [P in K]: number } & { readonly bytes: number };

function regions<K extends string>(sizes: ReadonlyArray<readonly [K, number]>): Regions<K> {
  const out: Record<string, number> = {};
  let at = 0;
  for (const [name, bytes] of sizes) {
    out[name] = at;
    at += Math.ceil(bytes / 64) * 64;
  }
  out.bytes = at;
  return out as Regions<K>;
}

/** Where the statistics come from: computed from x, the running ones, or merged moments given by the caller. */
export type StatsSource = 'batch' | 'running' | 'given';

export interface ForwardPlan {
  readonly g: Geometry;
  /** 'fused': forwardTrainNchwF32, one channel at a time; 'separate': statistics, fold, apply. */
  readonly path: 'fused' | 'separate';
  readonly channelsLast: boolean;
  readonly stats: StatsSource;
  /** Statistics blocks per channel (batch statistics on the separate path), else 0. */
  readonly blocks: number;
  /**
   * f64 stats: mean | m2 (or var) | invStd; f32 params: meanHi | scale | shift | gamma | beta |
   * runningMean | runningVar | saveMean | saveInvStd; f64 partials; the channels-last workspace.
   */
  readonly workspace: Regions<'stats' | 'params' | 'partials' | 'work'>;
}

export interface BackwardPlan {
  readonly g: Geometry;
  /** 'fused': backwardNchwF32 (local sums, NCHW, large planes); 'separate': reduce, fold, dx. */
  readonly path: 'fused' | 'separate';
  readonly channelsLast: boolean;
  /** Sums reduced here, or all-reduced sums given by the caller (synchronized BN). */
  readonly sums: 'local' | 'given';
  /** Blocks per channel of the backward partials (local sums on the separate path), else 0. */
  readonly blocks: number;
  /**
   * f64 sums: Σdy | Σdy·(x − mean); f32 params: mean | invStd | gamma | k1 | k2 | k3 | dweight |
   * dbias; f64 backward partials; the channels-last workspace.
   */
  readonly workspace: Regions<'sums' | 'params' | 'partials' | 'work'>;
}

export interface MomentsPlan {
  readonly g: Geometry;
  readonly channelsLast: boolean;
  readonly blocks: number;
  /** f64 stats: mean | m2; partials; the channels-last workspace. */
  readonly workspace: Regions<'stats' | 'partials' | 'work'>;
}

export interface ReducePlan {
  readonly g: Geometry;
  readonly channelsLast: boolean;
  readonly blocks: number;
  /** f64 sums: Σdy | Σdy·(x − mean); f32 mean; f64 backward partials; the channels-last workspace. */
  readonly workspace: Regions<'sums' | 'mean' | 'partials' | 'work'>;
}

/** Plans by key; the oldest is dropped beyond PLAN_CACHE_SIZE (a Map keeps insertion order). */
const PLAN_CACHE_SIZE = 64;
const cache = new Map<string, AnyPlan>();

type AnyPlan = ForwardPlan | BackwardPlan | MomentsPlan | ReducePlan | RowNormPlan | RowNormBackwardPlan | GroupPlan;

/** The last plan of each (op, flag), checked first: a repeated call builds no key. */
const last: Record<string, { g: Geometry; plan: AnyPlan } | undefined> = Object.create(null);

function sameShape(a: Geometry, b: Geometry): boolean {
  if (a.layout !== b.layout || a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  return true;
}

/** `slot` names (op, flag) as one literal, so the memo lookup builds no string. */
function cached<P extends AnyPlan>(slot: string, op: string, g: Geometry, flag: string, make: () => P): P {
  const recent = last[slot];
  if (recent !== undefined && sameShape(recent.g, g)) return recent.plan as P;
  const key = `${op} ${g.layout} ${flag} ${g.shape.join(',')}`;
  let plan = cache.get(key) as P | undefined;
  if (plan === undefined) {
    plan = make();
    if (cache.size >= PLAN_CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(key, plan);
  }
  last[slot] = { g, plan };
  return plan;
}

export function forwardPlan(g: Geometry, stats: StatsSource): ForwardPlan {
  const slot = stats === 'batch' ? 'forward batch' : stats === 'running' ? 'forward running' : 'forward given';
  return cached(slot, 'forward', g, stats, () => {
    const C = g.channels, last = channelsLast(g);
    const path = stats === 'batch' && !last && fusedNchw(g) ? 'fused' : 'separate';
    const blocks = stats === 'batch' && path === 'separate' ? statsBlocks(g) : 0;
    return {
      g, path, channelsLast: last, stats, blocks,
      workspace: regions([['stats', 24 * C], ['params', 36 * C], ['partials', 32 * C * blocks], ['work', last ? workspaceBytes(C) : 0]]),
    };
  });
}

export function backwardPlan(g: Geometry, sums: 'local' | 'given'): BackwardPlan {
  return cached(sums === 'local' ? 'backward local' : 'backward given', 'backward', g, sums, () => {
    const C = g.channels, last = channelsLast(g);
    const path = sums === 'local' && !last && fusedNchw(g) ? 'fused' : 'separate';
    const blocks = sums === 'local' && path === 'separate' ? statsBlocks(g) : 0;
    return {
      g, channelsLast: last, sums, path, blocks,
      workspace: regions([['sums', 16 * C], ['params', 32 * C], ['partials', 16 * C * blocks], ['work', last ? workspaceBytes(C) : 0]]),
    };
  });
}

export function momentsPlan(g: Geometry): MomentsPlan {
  return cached('moments', 'moments', g, '', () => {
    const C = g.channels, last = channelsLast(g), blocks = statsBlocks(g);
    return {
      g, channelsLast: last, blocks,
      workspace: regions([['stats', 16 * C], ['partials', 32 * C * blocks], ['work', last ? workspaceBytes(C) : 0]]),
    };
  });
}

export function reducePlan(g: Geometry): ReducePlan {
  return cached('reduce', 'reduce', g, '', () => {
    const C = g.channels, last = channelsLast(g), blocks = statsBlocks(g);
    return {
      g, channelsLast: last, blocks,
      workspace: regions([['sums', 16 * C], ['mean', 4 * C], ['partials', 16 * C * blocks], ['work', last ? workspaceBytes(C) : 0]]),
    };
  });
}

/**
 * LayerNorm and RMSNorm (src/ops/layernorm.ts, assembly/rows.ts) on g = geometry([R, D], 'NHWC'):
 * R rows (g.outer) of D = prod(normalizedShape) values (g.channels).
 */
export interface RowNormPlan {
  readonly g: Geometry;
  /** Statistics blocks (segments of STATS_BLOCK values) per row. */
  readonly blocks: number;
  /** f64 stats: mean | m2 (R each); f32 saved: saveMean | saveInvStd (R each); f64 partials; f32 params: weight | bias copies (D each). */
  readonly workspace: Regions<'stats' | 'saved' | 'partials' | 'params'>;
}

export interface RowNormBackwardPlan {
  readonly g: Geometry;
  /** The column sums' partition: blocks of blockRows rows (the shape's alone, never the thread count's). */
  readonly blockRows: number;
  readonly blocks: number;
  /**
   * f64 partials: [dweight | dbias] (D each) per block; f64 sums: the same, merged in block order;
   * f32 params: weight (D) | saved mean | saved invStd (R each) copies; f32 grads: dweight | dbias (D each).
   */
  readonly workspace: Regions<'partials' | 'sums' | 'params' | 'grads'>;
}

export function rowNormPlan(g: Geometry): RowNormPlan {
  return cached('row norm', 'rowNorm', g, '', () => {
    const R = g.outer, D = g.channels, blocks = blocksNchw(1, D, STATS_BLOCK);
    return { g, blocks, workspace: regions([['stats', 16 * R], ['saved', 8 * R], ['partials', 32 * blocks * R], ['params', 8 * D]]) };
  });
}

const ROW_BLOCKS = 16, MIN_ROW_BLOCK_VALUES = 1 << 16;

export function rowNormBackwardPlan(g: Geometry): RowNormBackwardPlan {
  return cached('row norm backward', 'rowNormBackward', g, '', () => {
    // At most ROW_BLOCKS blocks (enough to balance 4 threads), of at least 2^16 values: a small
    // tensor is one block, and the partials (16·D bytes per block) stay a small fraction of the
    // traffic. Measured: the extra zeroing and merge cost nothing visible at [2048, 4096].
    const R = g.outer, D = g.channels;
    const blockRows = Math.max(Math.ceil(R / ROW_BLOCKS), Math.ceil(MIN_ROW_BLOCK_VALUES / D)), blocks = Math.ceil(R / blockRows);
    return {
      g, blockRows, blocks,
      workspace: regions([['partials', 16 * D * blocks], ['sums', 16 * D], ['params', 4 * D + 8 * R], ['grads', 8 * D]]),
    };
  });
}

export { STATS_BLOCK };

/**
 * GroupNorm and InstanceNorm (src/ops/groupnorm.ts): N samples, G groups of Cg = C / G channels,
 * R spatial positions per sample; InstanceNorm is G = C.
 *   'runs' (NCHW, or one spatial position in either layout): group (n, g) is one contiguous run
 *     of Cg·R values, statistics as NCHW with outer 1 and N·G channels; the apply and backward
 *     passes see N·C planes of R values.
 *   'rows' (channels-last, R > 1): sample n is [R][C] rows; statistics and backward sums per
 *     sample as channels-last batch norm over R rows, groups merged from their channels' partials.
 */
export interface GroupPlan {
  readonly g: Geometry;
  readonly samples: number;
  readonly groups: number;
  readonly spatial: number;
  readonly path: 'runs' | 'rows';
  /** Blocks of the statistics partition (forward) or of the backward sums (backward): per run or plane ('runs'), per sample ('rows'). */
  readonly blocks: number;
  /**
   * Forward: f64 group mean | m2 (N·G), per-(n, c) mean | m2 | invStd (N·C); f32 meanHi | scale |
   * shift | gamma | beta (N·C). Backward: f64 Σdy | Σdy·(x − μ) (N·C); f32 mean | k1 | k2 | k3 |
   * scale | shift (N·C).
   * Then the block partials and the channels-last workspace.
   */
  readonly workspace: Regions<'stats' | 'params' | 'partials' | 'work'>;
}

function makeGroupPlan(g: Geometry, groups: number, pass: 'forward' | 'backward'): GroupPlan {
  const N = g.shape[0], C = g.channels, R = g.count / N;
  const NC = N * C, NG = N * groups, M = (C / groups) * R;
  const path = g.layout === 'NHWC' && R > 1 ? 'rows' : 'runs';
  const blocks = path === 'rows' ? blocksRows(R, STATS_BLOCK) : blocksNchw(1, pass === 'forward' ? M : R, STATS_BLOCK);
  const perBlock = path === 'rows' ? N * C : pass === 'forward' ? NG : NC;
  const workspace = pass === 'forward'
    ? regions([['stats', 16 * NG + 24 * NC], ['params', 20 * NC], ['partials', 32 * perBlock * blocks],
      ['work', path === 'rows' ? workspaceBytes(C) : 0]])
    : regions([['stats', 16 * NC], ['params', 24 * NC], ['partials', 16 * perBlock * blocks], ['work', path === 'rows' ? workspaceBytes(C) : 0]]);
  return { g, samples: N, groups, spatial: R, path, blocks, workspace };
}

export function groupNormPlan(g: Geometry, groups: number, pass: 'forward' | 'backward'): GroupPlan {
  // The group count is part of the key: the memo slot names it (a repeated call builds one short string).
  return cached(`group ${pass} ${groups}`, `group ${pass}`, g, String(groups), () => makeGroupPlan(g, groups, pass));
}

export function instanceNormPlan(g: Geometry, pass: 'forward' | 'backward'): GroupPlan {
  return cached(pass === 'forward' ? 'instance forward' : 'instance backward', `instance ${pass}`, g, '', () => makeGroupPlan(g, g.channels, pass));
}
