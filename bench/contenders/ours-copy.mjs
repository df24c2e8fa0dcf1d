// Ours, SIMD build, plain Float32Arrays in and out (the engine copies through wasm memory): see ours.mjs.
import { oursContender } from './ours.mjs';
export const id = 'ours-copy';
export const label = 'ours, copy in/out';
export const setup = oursContender('copy');
