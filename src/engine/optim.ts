/**
 * AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias-corrected moments), the learning-rate
 * schedules of HF transformers (linear warmup, then cosine to 0 or constant), and global-norm clipping as
 * torch.nn.utils.clip_grad_norm_. Float64 state on the host: LoRA parameters are small.
 */

export interface AdamWConfig {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export interface AdamWState {
  step: number;
  m: Map<string, Float64Array>;
  v: Map<string, Float64Array>;
}

export function newAdamWState(): AdamWState {
  return { step: 0, m: new Map(), v: new Map() };
}

/** one update of every parameter in `params` with its gradient in `grads` (missing = zero), at learning rate `lr` */
export function adamwStep(
  params: Map<string, Float32Array>,
  grads: Map<string, Float64Array>,
  st: AdamWState,
  c: AdamWConfig,
  lr: number,
): void {
  st.step++;
  const [b1, b2] = c.betas;
  const bc1 = 1 - b1 ** st.step,
    bc2 = 1 - b2 ** st.step;
  for (const [name, p] of params) {
    const g = grads.get(name);
    let m = st.m.get(name),
      v = st.v.get(name);
    if (!m || !v) {
      m = new Float64Array(p.length);
      v = new Float64Array(p.length);
      st.m.set(name, m);
      st.v.set(name, v);
    }
    for (let i = 0; i < p.length; i++) {
      const gi = g ? g[i] : 0;
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      // torch: p *= 1 - lr·wd; p -= lr · m̂ / (√v̂ + eps)
      const decayed = p[i] * (1 - lr * c.weightDecay);
      p[i] = decayed - (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + c.eps);
    }
  }
}

/** the global L2 norm of all gradients, and clipping to maxNorm in place (torch: coef = max / (norm + 1e-6), ≤ 1) */
export function clipGradNorm(grads: Map<string, Float64Array>, maxNorm: number | null): number {
  let sq = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  if (maxNorm !== null && maxNorm > 0) {
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] *= coef;
  }
  return norm;
}

export interface Schedule {
  kind: 'cosine' | 'constant' | 'linear';
  warmupSteps: number;
  totalSteps: number;
}

/** HF get_{cosine,linear,constant}_schedule_with_warmup: the multiplier of the base lr at optimizer step `step` (0-based) */
export function lrFactor(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return step / Math.max(1, s.warmupSteps);
  if (s.kind === 'constant') return 1;
  const progress = (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps);
  if (s.kind === 'linear') return Math.max(0, 1 - progress);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
