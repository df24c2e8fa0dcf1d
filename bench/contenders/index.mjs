// The contenders, in the order they run within each case (floor first: every ratio is to it).
// Each module exports id, label and setup(ctx) -> { run, output, teardown, notes?, info? } or
// { unsupported: reason }. ctx = { c (case), op, inputs, saved (backward: saveMean/saveInvStd
// from our training forward), compareNaive (checks an extra output against the reference) }.
import * as floor from './floor.mjs';
import * as oursZeroCopy from './ours-zero-copy.mjs';
import * as oursCopy from './ours-copy.mjs';
import * as oursRelaxed from './ours-relaxed.mjs';
import * as oursScalar from './ours-scalar.mjs';
import * as plainJs from './plain-js.mjs';
import * as tfjsWasm from './tfjs-wasm.mjs';
import * as ortWeb from './ort-web.mjs';
import * as ortNode from './ort-node.mjs';

export const CONTENDERS = [floor, oursZeroCopy, oursRelaxed, oursCopy, oursScalar, plainJs, tfjsWasm, ortWeb, ortNode];
export const PEERS = ['plain-js', 'tfjs-wasm', 'ort-web', 'ort-node'];
