// Ours, SIMD build, tensors already in wasm memory (engine.tensor): see ours.mjs.
import { oursContender } from './ours.mjs';
export const id = 'ours-zero-copy';
export const label = 'ours, zero-copy';
export const setup = oursContender('zero-copy');
