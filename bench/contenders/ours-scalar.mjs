// Ours, scalar (no-SIMD) build, zero-copy: see ours.mjs.
import { oursContender } from './ours.mjs';
export const id = 'ours-scalar';
export const label = 'ours, scalar build';
export const setup = oursContender('scalar');
