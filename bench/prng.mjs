// Seeded pseudo-random numbers for test data, benchmark inputs and the examples: one module, so
// every user draws the same sequence for a seed. Plain ES module with no imports, so the browser
// demo page loads it by relative URL (no bundler) and Node, tsx and vitest import it as is.

/**
 * mulberry32 (Tommy Ettinger's 32-bit generator): uniform deviates in [0, 1), 2^32 period, the
 * same sequence for the same seed on every engine. `seed` is taken modulo 2^32.
 * @param {number} seed
 * @returns {() => number}
 */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Standard normal deviates from a uniform source (Box-Muller, cosine branch: two uniforms per
 * deviate).
 * @param {() => number} next  uniform in [0, 1)
 * @returns {() => number}
 */
export function gaussian(next) {
  return () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}
