// The arguments bench/kernels.mjs gives each registry kernel (src/wasm/kernels.ts) on a bench
// case: the registry's scalar names filled from the case's geometry, and which cases a kernel's
// layout applies to. test/registry.test.ts checks every kernel gets every argument it declares.
import { blocksNchw, blocksRows } from '../dist/wasm/kernels.js';

export const BLOCK = 2048; // src/exec.ts STATS_BLOCK

/**
 * Scalar arguments of a kernel on one case (the names the registry uses): every block or channel
 * range whole (b0 = 0, b1 = blocks; c0 = 0, c1 = C), the row norms' column sums in one block of
 * all rows. A name missing here would reach the kernel as 0 (an empty range, or a trap).
 */
export function scalars(spec, c) {
  const C = c.C, count = c.size / C;
  const nchw = c.layout === 'NCHW' && c.shape.length > 2;
  const inner = nchw ? c.size / (c.shape[0] * C) : 1, outer = nchw ? c.shape[0] : count;
  const blocks = spec.layout === 'channels-last' ? blocksRows(count, BLOCK) : spec.layout === 'rows' ? 1 : blocksNchw(outer, inner, BLOCK);
  const v = {
    outer, C, inner, rows: count, block: BLOCK, b0: 0, b1: blocks, blocks, c0: 0, c1: C, blockRows: count,
    training: 1, xmu: 1, eps: 1e-5, lower: -Infinity, divisor: count, momentum: 0.1, n: count,
  };
  for (const a of spec.args) {
    if (a.kind !== 'f32[]' && a.kind !== 'f64[]' && !(a.name in v)) throw new Error(`bench/kernels.mjs: no value for the kernel argument ${a.name}`);
  }
  return v;
}

/** NCHW kernels on NCHW cases; channels-last and row kernels on NHWC and [N, C] cases; per-channel ones on all. */
export function applies(spec, c) {
  const channelsLast = c.layout === 'NHWC' || c.shape.length === 2;
  return spec.layout === 'per-channel' || (spec.layout === 'NCHW') !== channelsLast;
}

