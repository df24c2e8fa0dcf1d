// Types of prng.mjs (seeded pseudo-random numbers shared by tests, benchmarks and examples).

/** mulberry32: uniform deviates in [0, 1) for a seed (taken modulo 2^32). */
export declare function mulberry32(seed: number): () => number;
/** Standard normal deviates from a uniform source (Box-Muller, two uniforms per deviate). */
export declare function gaussian(next: () => number): () => number;
