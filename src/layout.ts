import { InvalidArgumentError, ShapeError, describe } from './errors.js';
import { isArray } from './typed.js';

/** NCHW: channel axis 1 (N, C, ...spatial). NHWC: channel axis last (N, ...spatial, C). */
export type Layout = 'NCHW' | 'NHWC';

/**
 * A validated shape seen as three factors: outer x C x inner, row-major.
 * NCHW: outer = N, inner = product of spatial dims (each (n, c) plane is contiguous).
 * NHWC: outer = N * product of spatial dims, inner = 1 (channels innermost).
 * count = outer * inner is the number of values per channel (the reduction length).
 */
export interface Geometry {
  readonly layout: Layout;
  readonly shape: readonly number[];
  readonly channels: number;
  readonly outer: number;
  readonly inner: number;
  readonly count: number;
  readonly size: number;
}

/** Largest element count a 32-bit wasm memory could hold as float32. */
export const MAX_ELEMENTS = 2 ** 30;

/** Most dimensions a shape may have (beyond any framework's tensors; bounds what reading a shape costs). */
export const MAX_RANK = 64;

export function channelAxis(rank: number, layout: Layout): number {
  return layout === 'NCHW' ? 1 : rank - 1;
}

export function checkLayout(layout: unknown, argument = 'opts.layout'): Layout {
  if (layout === undefined) return 'NCHW';
  if (layout !== 'NCHW' && layout !== 'NHWC') {
    throw new InvalidArgumentError(argument, `'NCHW' or 'NHWC'`, describe(layout));
  }
  return layout;
}

/** Validates `shape` (rank >= 2, positive integer dims) and factors it for `layout`. */
export function geometry(shape: unknown, layout: Layout, argument = 'shape'): Geometry {
  if (!isArray(shape) && !ArrayBuffer.isView(shape)) {
    throw new InvalidArgumentError(argument, 'an array of dimensions', describe(shape));
  }
  const source = shape as ArrayLike<unknown>;
  const rank = source.length;
  if (!(rank <= MAX_RANK)) throw new ShapeError(argument, `at most ${MAX_RANK} dimensions`, `${describe(rank)} dimensions`);
  const dims: unknown[] = [];
  for (let i = 0; i < rank; i++) dims[i] = source[i];
  if (dims.length < 2) {
    throw new ShapeError(argument, 'rank >= 2 (N, C, ...)', `rank ${dims.length} [${dims.join(', ')}]`);
  }
  let size = 1;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) {
      throw new ShapeError(`${argument}[${i}]`, 'a positive integer', describe(d));
    }
    size *= d;
  }
  if (size > MAX_ELEMENTS) {
    throw new ShapeError(argument, `at most ${MAX_ELEMENTS} elements (4 GiB of float32)`, `${size} elements`);
  }
  const numbers = dims as number[];
  const axis = channelAxis(numbers.length, layout);
  const channels = numbers[axis];
  let inner = 1;
  for (let i = axis + 1; i < numbers.length; i++) inner *= numbers[i];
  const outer = size / (channels * inner);
  return { layout, shape: numbers, channels, outer, inner, count: outer * inner, size };
}
