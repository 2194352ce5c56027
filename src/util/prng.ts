/**
 * The project's one pseudo-random generator, mulberry32: small, fast, and the same stream in Node and the
 * browser for a seed. It comes in two forms: `rng(seed)`, a closure for code that draws freely (ShapesWorld,
 * initialisations), and `mulberry32(state)`, one draw with its next state, for code whose RNG state must be
 * saved and restored exactly (a trainer's data order in a checkpoint).
 */

/** one draw in [0, 1) from `state`, and the state after it */
export function mulberry32(state: number): [number, number] {
  const next = (state + 0x6d2b79f5) >>> 0;
  let t = next;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [((t ^ (t >>> 14)) >>> 0) / 4294967296, next];
}

/** a generator of uniform draws in [0, 1) seeded by `seed` */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    const [u, next] = mulberry32(state);
    state = next;
    return u;
  };
}

/** an independent seed for the k-th stream of a seed (a golden-ratio mix; stays a uint32) */
export const deriveSeed = (seed: number, k: number): number =>
  (Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(k + 1, 0x85ebca6b)) >>> 0;

/** a uint32 of a string (FNV-1a), to seed one stream per name (a LoRA module, a tensor) */
export function stringSeed(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** fill `out` with normal draws of standard deviation `std` (Box-Muller on `rand`) */
export function fillNormal(out: Float32Array, rand: () => number, std: number): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    // 1 - u is in (0, 1], so the log is finite
    const r = Math.sqrt(-2 * Math.log(1 - rand())),
      a = 2 * Math.PI * rand();
    out[i] = std * r * Math.cos(a);
    if (i + 1 < out.length) out[i + 1] = std * r * Math.sin(a);
  }
  return out;
}
