// Ours, relaxed-SIMD build (FMA in the f64 sums), zero-copy: see ours.mjs.
import { oursContender } from './ours.mjs';
export const id = 'ours-relaxed';
export const label = 'ours, relaxed-SIMD build, zero-copy';
export const setup = oursContender('relaxed');
