/**
 * The partition-function argument of the IC-VCO paper (Section 2.2-3), made exact on a toy: a policy over a
 * finite response set with explicit rewards, where Z can be summed instead of being intractable.
 *
 * DPO's closed form (Eq. 1-2): r(c, y) = β log π*(y|c)/π_ref(y|c) + β log Z(c), with
 * Z(c) = Σ_y π_ref(y|c) exp(r(c,y)/β). A preference between two responses in one context c cancels Z(c)
 * (Eq. 3). A preference between two contexts for one response (image swap, Eq. 5-7) does not:
 *   r(m,x,y) - r(m',x,y) = [implicit margin] + β log Z(m,x)/Z(m',x)
 * so image-swap DPO, which fits σ(implicit margin), is off by the residual β log Z(m,x)/Z(m',x): its
 * decision boundary sits at a true reward margin equal to the residual instead of 0, a different offset
 * for every sample. IC-VCO compares y and y' inside one shared context (M, x̂): the same Z on both sides.
 *
 * Pure float64 math over the loss module alone: the explainer page (src/app/explain) draws what these functions
 * return, and its training animation runs the loss module's own objectives through `evaluate`, so the dL/ds
 * it follows is the one a real trainer would get.
 */
import { evaluate } from './objective.js';
import { resolveObjective } from './registry.js';
import { logSigmoid, logSumExp, sigmoid } from './scalar.js';
import type { Img, PreferenceScores, SeqKey } from './types.js';

export interface ToyContext {
  label: string;
  /** unnormalised log π_ref(y | c) over the response set (normalised here) */
  refLogits: number[];
  /** true rewards r(c, y) */
  rewards: number[];
}

export function logNormalise(logits: ReadonlyArray<number>): number[] {
  const z = logSumExp(logits);
  return logits.map((l) => l - z);
}

/** log Z(c) = log Σ_y π_ref(y|c) exp(r(c,y)/β)   (Eq. 2) */
export function logPartition(ctx: ToyContext, beta: number): number {
  checkContext(ctx);
  const ref = logNormalise(ctx.refLogits);
  return logSumExp(ref.map((l, i) => l + ctx.rewards[i] / beta));
}

/** log π*(y|c) = log π_ref(y|c) + r(c,y)/β - log Z(c): the KL-regularised optimum DPO's reward is read from */
export function optimalLogProbs(ctx: ToyContext, beta: number): number[] {
  const ref = logNormalise(ctx.refLogits);
  const lz = logPartition(ctx, beta);
  return ref.map((l, i) => l + ctx.rewards[i] / beta - lz);
}

/** β log π(y|c)/π_ref(y|c) for every response; with π = π* this is r(c,y) - β log Z(c) */
export function implicitRewards(policyLogits: ReadonlyArray<number>, ctx: ToyContext, beta: number): number[] {
  const pol = logNormalise(policyLogits);
  const ref = logNormalise(ctx.refLogits);
  return pol.map((l, i) => beta * (l - ref[i]));
}

export interface PairAnalysis {
  /** r(winner) - r(loser): the margin Bradley-Terry is defined on */
  trueMargin: number;
  /** the margin of implicit rewards β log(π* / π_ref), which the DPO-style loss fits */
  implicitMargin: number;
  /** trueMargin - implicitMargin = β log Z(winner ctx) / Z(loser ctx); 0 when both sides share a context */
  residual: number;
  /** σ(trueMargin): the preference probability under the true rewards */
  pTrue: number;
  /** σ(implicitMargin): what the loss believes it is, at the optimum π* */
  pImplicit: number;
  /**
   * where the implicit classifier's boundary sits in true-reward units: it calls the pair correctly
   * ordered iff trueMargin > boundaryShift. 0 for a consistent objective.
   */
  boundaryShift: number;
}

function analyse(trueMargin: number, residual: number): PairAnalysis {
  const implicitMargin = trueMargin - residual;
  return {
    trueMargin,
    implicitMargin,
    residual,
    pTrue: sigmoid(trueMargin),
    pImplicit: sigmoid(implicitMargin),
    boundaryShift: residual,
  };
}

/** Response preference y_i ≻ y_j inside one context (DPO, and IC-VCO's shared context (M, x̂)): Z cancels. */
export function sameContextPair(ctx: ToyContext, beta: number, i: number, j: number): PairAnalysis {
  const pstar = optimalLogProbs(ctx, beta);
  const ref = logNormalise(ctx.refLogits);
  const implicit = beta * (pstar[i] - ref[i]) - beta * (pstar[j] - ref[j]);
  const trueMargin = ctx.rewards[i] - ctx.rewards[j];
  // the implicit margin equals the true one exactly: the same log Z(c) on both sides
  return { ...analyse(trueMargin, trueMargin - implicit) };
}

/**
 * Context preference for one response, r(A, y_i) ≻ r(B, y_i): image-swap visual DPO (A = m, B = m'), or the
 * cross-anchor regrouping (A = (M, x̂), B = (M, x̂')). The residual is β (log Z(A) - log Z(B)).
 */
export function crossContextPair(a: ToyContext, b: ToyContext, beta: number, i: number): PairAnalysis {
  const pa = optimalLogProbs(a, beta),
    pb = optimalLogProbs(b, beta);
  const ra = logNormalise(a.refLogits),
    rb = logNormalise(b.refLogits);
  const implicit = beta * (pa[i] - ra[i]) - beta * (pb[i] - rb[i]);
  const trueMargin = a.rewards[i] - b.rewards[i];
  const residual = beta * (logPartition(a, beta) - logPartition(b, beta));
  return {
    trueMargin,
    implicitMargin: implicit,
    residual,
    pTrue: sigmoid(trueMargin),
    pImplicit: sigmoid(implicit),
    boundaryShift: residual,
  };
}

/**
 * For a policy that is not (yet) optimal: the image-swap DPO loss as trained (Eq. 5, residual dropped) next
 * to the theory-consistent one (Eq. 7, residual kept), for response i preferred in A over B.
 */
export function imageSwapLosses(
  policyA: ReadonlyArray<number>,
  policyB: ReadonlyArray<number>,
  a: ToyContext,
  b: ToyContext,
  beta: number,
  i: number,
): { biased: number; consistent: number; residual: number } {
  const da = implicitRewards(policyA, a, beta)[i];
  const db = implicitRewards(policyB, b, beta)[i];
  const residual = beta * (logPartition(a, beta) - logPartition(b, beta));
  return { biased: -logSigmoid(da - db), consistent: -logSigmoid(da - db + residual), residual };
}

/** A ready-made toy: "what colour is the circle?" with an image of a red circle (m) and its edit to blue (m'). */
export function exampleWorld(): { responses: string[]; m: ToyContext; mPrime: ToyContext; beta: number } {
  return {
    responses: ['The circle is red.', 'The circle is blue.', 'The circle is green.', 'There is no circle.'],
    // the reference already leans to what it sees, with a language prior for "red"
    m: { label: 'm (red circle)', refLogits: [1.2, 0.1, -0.6, -1.5], rewards: [1.0, -0.6, -0.8, -1.0] },
    mPrime: { label: "m' (blue circle)", refLogits: [0.5, 0.4, -0.6, -1.5], rewards: [-0.6, 1.0, -0.8, -1.0] },
    beta: 0.1,
  };
}

function checkContext(ctx: ToyContext): void {
  if (ctx.refLogits.length !== ctx.rewards.length || ctx.refLogits.length === 0) {
    throw new Error(
      `toy context "${ctx.label}": refLogits (${ctx.refLogits.length}) and rewards ` +
        `(${ctx.rewards.length}) must list the same non-empty response set`,
    );
  }
}

// ---------------------------------------------------------------- a whole world: two images, one question

/**
 * The explainer's world: one question x, a small answer set, two images m and m′ with a reference and true
 * rewards each, and IC-VCO's shared two-image context (M, x̂). y is the answer faithful to m and y′ the one
 * faithful to m′, as in the loss module's samples (m, m′, x, y, y′).
 */
export interface ToyWorld {
  question: string;
  responses: string[];
  m: ToyContext;
  mPrime: ToyContext;
  beta: number;
  /** index of y (faithful to m) and of y′ (faithful to m′) in `responses` */
  y: number;
  yPrime: number;
  /**
   * how much the shared context's reference leans on the image the anchor does not point at:
   * π_ref(·|M, x̂_t) = (1 − leak)·π_ref(·|t, x) + leak·π_ref(·|other, x). Whatever it is, Z(M, x̂_t) cancels.
   */
  leak: number;
}

/** the contexts a toy policy is defined on: the two single images and the shared context anchored on each */
export type ToyCtx = Img | `M>${Img}`;

/**
 * (M, x̂_t): both images, the anchor pointing at t. Its answers are judged as in t alone (the anchor says which
 * image the question is about); its reference is a mixture, so its Z differs from both Z(m,x) and Z(m′,x).
 */
export function sharedContext(world: ToyWorld, target: Img): ToyContext {
  const [t, o] = target === 'm' ? [world.m, world.mPrime] : [world.mPrime, world.m];
  checkContext(t);
  checkContext(o);
  if (!(world.leak >= 0 && world.leak <= 1)) throw new Error(`toy world: leak must lie in [0, 1] (got ${world.leak})`);
  const pt = logNormalise(t.refLogits),
    po = logNormalise(o.refLogits);
  const a = Math.log1p(-world.leak),
    b = Math.log(world.leak);
  return {
    label: `(M, x̂ → ${target === 'm' ? 'm' : 'm′'})`,
    refLogits: pt.map((l, i) => logSumExp([a + l, b + po[i]])),
    rewards: [...t.rewards],
  };
}

export function toyContext(world: ToyWorld, ctx: ToyCtx): ToyContext {
  if (ctx === 'm') return world.m;
  if (ctx === "m'") return world.mPrime;
  return sharedContext(world, ctx === 'M>m' ? 'm' : "m'");
}

export interface PartitionTerm {
  /** π_ref(y|c) */
  ref: number;
  /** r(c, y) */
  reward: number;
  /** log[π_ref(y|c)·exp(r(c,y)/β)]: this answer's term of Z(c) (Eq. 2), in logs because exp(r/β) overflows fast */
  logTerm: number;
  /** the term's share of Z(c), which is π*(y|c): the optimal policy is the sum's terms, normalised */
  share: number;
}

/** Z(c) as the sum it is: every term, and log Z(c) */
export function partitionTerms(ctx: ToyContext, beta: number): { terms: PartitionTerm[]; logZ: number } {
  const logZ = logPartition(ctx, beta);
  const ref = logNormalise(ctx.refLogits);
  return {
    logZ,
    terms: ref.map((l, i) => {
      const logTerm = l + ctx.rewards[i] / beta;
      return { ref: Math.exp(l), reward: ctx.rewards[i], logTerm, share: Math.exp(logTerm - logZ) };
    }),
  };
}

// ---------------------------------------------------------------- what each objective's pairs converge to

/** image-swap visual DPO (Eq. 5-6) or IC-VCO's shared-context objective (Eq. 9, the multi-image branch alone) */
export type ToyObjective = 'visdpo' | 'icvco';

export interface DirectionTheory {
  /** the direction's target image: its faithful answer is the preferred side */
  target: Img;
  /** the two scores the pair compares, as loss-module keys of the toy sample (chosen first) */
  chosen: SeqKey;
  rejected: SeqKey;
  /** r(chosen) − r(rejected) under the true rewards */
  trueMargin: number;
  /** β log Z(chosen's context)/Z(rejected's context): exactly 0 when both sides share one context */
  residual: number;
  /** σ(trueMargin): how often the chosen side wins a pair drawn from the true rewards (Bradley–Terry) */
  pData: number;
  /**
   * β·h where the objective's expected loss over those pairs is stationary: the loss fits σ(βh) to pData, so
   * βh = trueMargin
   */
  fixedPoint: number;
  /** β·h of the reward-maximising policy π* (Eq. 1): trueMargin − residual */
  optimum: number;
  /** β·h where the preference Eq. 7 reads from a policy, σ(βh + residual), is ½: −residual */
  boundary: number;
}

/** the loss-module keys of each direction's pair: target m, then target m′ (the loss module's row order) */
const DIRECTION_KEYS: Record<ToyObjective, [[SeqKey, SeqKey], [SeqKey, SeqKey]]> = {
  visdpo: [
    ['m|y', "m'|y"],
    ["m'|y'", "m|y'"],
  ],
  icvco: [
    ['M>m|y', "M>m|y'"],
    ["M>m'|y'", "M>m'|y"],
  ],
};

function splitKey(k: SeqKey): [ToyCtx, 'y' | "y'"] {
  const [ctx, resp] = k.split('|');
  return [ctx as ToyCtx, resp as 'y' | "y'"];
}

/** Where each direction of an objective's pairs must end up, and where π* is: closed forms, no training. */
export function directionTheory(world: ToyWorld, objective: ToyObjective): [DirectionTheory, DirectionTheory] {
  const theory = (target: Img, [chosen, rejected]: [SeqKey, SeqKey]): DirectionTheory => {
    const [cc, cr] = splitKey(chosen),
      [rc, rr] = splitKey(rejected);
    const a = toyContext(world, cc),
      b = toyContext(world, rc);
    const ia = cr === 'y' ? world.y : world.yPrime,
      ib = rr === 'y' ? world.y : world.yPrime;
    const trueMargin = a.rewards[ia] - b.rewards[ib];
    // one context on both sides: the same log Z, so the residual is 0 by construction, not by rounding
    const residual = cc === rc ? 0 : world.beta * (logPartition(a, world.beta) - logPartition(b, world.beta));
    return {
      target,
      chosen,
      rejected,
      trueMargin,
      residual,
      pData: sigmoid(trueMargin),
      fixedPoint: trueMargin,
      optimum: trueMargin - residual,
      boundary: -residual,
    };
  };
  const [km, kmp] = DIRECTION_KEYS[objective];
  return [theory('m', km), theory("m'", kmp)];
}

// ---------------------------------------------------------------- training a toy policy with the loss module

export interface ToyTrainerOptions {
  /**
   * step size. The update is θ ← θ − lr/(β²·w)·dL/dθ, with w the objective's weight per pair (so that β and
   * the objective's coefficients set where training goes, not how fast the animation gets there)
   */
  lr?: number;
  /** pairs per direction per step: 'exact' uses the expected gradient over Bradley–Terry labels */
  pairs?: number | 'exact';
  /** seed of the label sampler (pairs ≠ 'exact') */
  seed?: number;
}

/** the default step size: slow enough that the explainer's animation shows the path, fast enough to converge */
export const TOY_LR = 0.08;

const TOY_OBJECTIVES: Record<ToyObjective, { spec: string; overrides: Record<string, unknown> }> = {
  visdpo: { spec: 'visdpo', overrides: {} },
  // Eq. 9 alone: no single-image branch (and so no VCDist), no anchor
  icvco: { spec: 'icvco', overrides: { singleBranch: false, anchor: false } },
};

/** a tiny PRNG (mulberry32): the loss module imports nothing, so it keeps its own */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A toy policy (free logits over the answer set in each context it is trained in, starting at the reference)
 * fitted by gradient descent on pairs drawn from the true rewards. Each pair is labelled by Bradley–Terry: the
 * target's side wins with probability σ(trueMargin), else the pair arrives the other way round (images swapped
 * for image-swap DPO, answers swapped for the shared context). The loss module's objective gives dL/ds for
 * each sequence score s = log π(y|c); the chain rule through log-softmax gives dL/dθ.
 */
export class ToyTrainer {
  readonly contexts: ToyCtx[];
  readonly theory: [DirectionTheory, DirectionTheory];
  /** policy logits per trained context */
  readonly logits: Map<ToyCtx, number[]>;
  steps = 0;
  private readonly ref: Map<ToyCtx, number[]>;
  private readonly objectiveImpl: ReturnType<typeof resolveObjective>;
  private readonly keys: SeqKey[];
  private readonly rate: number;
  private readonly pairs: number | 'exact';
  private readonly rand: () => number;

  constructor(
    readonly world: ToyWorld,
    readonly objective: ToyObjective,
    opts: ToyTrainerOptions = {},
  ) {
    checkContext(world.m);
    checkContext(world.mPrime);
    if (world.m.refLogits.length !== world.mPrime.refLogits.length)
      throw new Error('toy world: m and m′ must share one answer set');
    if (!(world.beta > 0)) throw new Error(`toy world: β must be positive (got ${world.beta})`);
    const spec = TOY_OBJECTIVES[objective];
    this.objectiveImpl = resolveObjective(spec.spec, { ...spec.overrides, beta: world.beta });
    this.keys = this.objectiveImpl.objective.requirements(this.objectiveImpl.config).map((r) => r.key);
    this.contexts = [...new Set(this.keys.map((k) => splitKey(k)[0]))];
    this.ref = new Map(this.contexts.map((c) => [c, logNormalise(toyContext(world, c).refLogits)]));
    this.logits = new Map(this.contexts.map((c) => [c, [...this.ref.get(c)!]]));
    this.theory = directionTheory(world, objective);
    this.pairs = opts.pairs ?? 'exact';
    if (this.pairs !== 'exact' && !(Number.isInteger(this.pairs) && this.pairs > 0))
      throw new Error(`toy trainer: pairs must be a positive integer or 'exact' (got ${this.pairs})`);
    this.rand = mulberry32(opts.seed ?? 1);
    // at the reference every margin is 0 and every pair costs w·log 2: w is the objective's weight per pair
    const w = this.evaluate(false).loss / (2 * Math.LN2);
    this.rate = (opts.lr ?? TOY_LR) / (world.beta * world.beta * w);
  }

  /** log π(·|c) of the current policy */
  logProbs(ctx: ToyCtx): number[] {
    const l = this.logits.get(ctx);
    if (!l) throw new Error(`the ${this.objective} toy policy is not trained in context ${ctx}`);
    return logNormalise(l);
  }

  /** β·h of each direction (target m, then target m′) for the current policy */
  margins(): [number, number] {
    const h = ([c, r]: [SeqKey, SeqKey]) => this.logRatio(c) - this.logRatio(r);
    const [a, b] = DIRECTION_KEYS[this.objective];
    return [this.world.beta * h(a), this.world.beta * h(b)];
  }

  /** n gradient steps */
  step(n = 1): void {
    for (let i = 0; i < n; i++) this.stepOnce();
  }

  private logRatio(k: SeqKey): number {
    const [ctx, i] = this.score(k, false);
    return this.logProbs(ctx)[i] - this.ref.get(ctx)![i];
  }

  /** the toy score a loss-module key stands for; a flipped pair swaps the images (image swap) or the answers */
  private score(k: SeqKey, flipped: boolean): [ToyCtx, number] {
    let [ctx, resp] = splitKey(k);
    if (flipped && this.objective === 'visdpo') ctx = ctx === 'm' ? "m'" : 'm';
    if (flipped && this.objective === 'icvco') resp = resp === 'y' ? "y'" : 'y';
    return [ctx, resp === 'y' ? this.world.y : this.world.yPrime];
  }

  /** which direction a key's pair belongs to: by answer for image swap, by anchor for the shared context */
  private direction(k: SeqKey): 0 | 1 {
    const [ctx, resp] = splitKey(k);
    return (this.objective === 'visdpo' ? resp === 'y' : ctx === 'M>m') ? 0 : 1;
  }

  private evaluate(flipped: boolean) {
    const sample: PreferenceScores = { policy: {}, reference: {} };
    const logp = new Map(this.contexts.map((c) => [c, this.logProbs(c)]));
    for (const k of this.keys) {
      const [ctx, i] = this.score(k, flipped);
      sample.policy[k] = logp.get(ctx)![i];
      sample.reference[k] = this.ref.get(ctx)![i];
    }
    return evaluate(this.objectiveImpl.objective, this.objectiveImpl.config, [sample]);
  }

  /** the weight of the pairs that arrive as the true preference says, per direction */
  private labelWeights(): [number, number] {
    const p = this.theory.map((d) => d.pData) as [number, number];
    if (this.pairs === 'exact') return p;
    const k = this.pairs;
    return p.map((pd) => {
      let wins = 0;
      for (let j = 0; j < k; j++) if (this.rand() < pd) wins++;
      return wins / k;
    }) as [number, number];
  }

  /**
   * dL/dθ per trained context, L the objective's loss averaged over the pairs' labels (`weights`: the share of
   * pairs per direction that arrive as the true preference says; default their Bradley–Terry probabilities)
   */
  gradient(weights: [number, number] = this.theory.map((d) => d.pData) as [number, number]): Map<ToyCtx, number[]> {
    const g = new Map(this.contexts.map((c) => [c, new Array<number>(this.world.responses.length).fill(0)]));
    for (const flipped of [false, true]) {
      const grads = this.evaluate(flipped).grads[0];
      for (const [k, d] of Object.entries(grads) as Array<[SeqKey, number]>) {
        const w = flipped ? 1 - weights[this.direction(k)] : weights[this.direction(k)];
        const [ctx, i] = this.score(k, flipped);
        g.get(ctx)![i] += w * d;
      }
    }
    // s_i = θ_i − logΣexp θ, so dL/dθ_k = dL/ds_k − π_k·Σ_i dL/ds_i
    for (const ctx of this.contexts) {
      const gs = g.get(ctx)!;
      const pi = this.logProbs(ctx).map(Math.exp);
      const total = gs.reduce((a, x) => a + x, 0);
      g.set(
        ctx,
        gs.map((x, k) => x - pi[k] * total),
      );
    }
    return g;
  }

  private stepOnce(): void {
    const g = this.gradient(this.labelWeights());
    for (const ctx of this.contexts) {
      const theta = this.logits.get(ctx)!,
        gs = g.get(ctx)!;
      for (let k = 0; k < theta.length; k++) theta[k] -= this.rate * gs[k];
    }
    this.steps++;
  }
}

// ---------------------------------------------------------------- a real sample, read through the toy

export interface MarginSplit {
  /** β(h_multi − h_image_swap) per direction: target m, then target m′ */
  differences: [number, number];
  /**
   * (D_m − D_m′)/2. For a policy that is optimal for one reward (the toy's π*), the shared context judging
   * answers as the target image does, this is β log Z(m,x)/Z(m′,x) + [r(m′,y) − r(m,y′)]: the residual,
   * exactly, when a wrong answer is as wrong in either image
   */
  partition: number;
  /** (D_m + D_m′)/2: 0 for any such policy, so what the partition argument cannot account for */
  unexplained: number;
  /** partition² / (partition² + unexplained²): the share of the squared differences; NaN when both are 0 */
  explained: number;
}

/**
 * Split the gap between a sample's shared-context and image-swap margins (in nats, per direction) into the part
 * the partition argument produces and the rest.
 */
export function splitMarginGap(
  target: { imageSwap: number; shared: number },
  other: { imageSwap: number; shared: number },
  beta: number,
): MarginSplit {
  const dm = beta * (target.shared - target.imageSwap),
    dmp = beta * (other.shared - other.imageSwap);
  const partition = (dm - dmp) / 2,
    unexplained = (dm + dmp) / 2;
  const sq = partition * partition + unexplained * unexplained;
  return { differences: [dm, dmp], partition, unexplained, explained: sq > 0 ? (partition * partition) / sq : NaN };
}

/** the toy's own π*, in the report's terms: image-swap and shared-context margins (nats) per direction */
export function optimalSampleMargins(world: ToyWorld): Array<{ imageSwap: number; shared: number }> {
  const swap = directionTheory(world, 'visdpo'),
    shared = directionTheory(world, 'icvco');
  return [0, 1].map((d) => ({ imageSwap: swap[d].optimum / world.beta, shared: shared[d].optimum / world.beta }));
}

// ---------------------------------------------------------------- the explainer's world and its presets

/** the explainer's answer set: one question about a star, the answer faithful to m first, to m′ second */
export const STAR_QUESTION = 'What colour is the star?';
export const STAR_ANSWERS = ['The star is yellow.', 'The star is red.', 'The star is blue.', 'There is no star.'];
export const STAR_NAMES = ['yellow', 'red', 'blue', 'no star'];

/** what the explainer's controls set: reference weights (normalised into π_ref), rewards, β and the leak */
export interface ToySettings {
  /** unnormalised π_ref(·|m,x) and π_ref(·|m′,x): each answer's weight over the sum of weights */
  refWeights: { m: number[]; mPrime: number[] };
  rewards: { m: number[]; mPrime: number[] };
  beta: number;
  leak: number;
}

export function toyWorld(s: ToySettings): ToyWorld {
  for (const w of [...s.refWeights.m, ...s.refWeights.mPrime]) {
    if (!(w > 0 && Number.isFinite(w))) throw new Error(`toy world: reference weights must be positive (got ${w})`);
  }
  return {
    question: STAR_QUESTION,
    responses: STAR_ANSWERS,
    m: { label: 'm (yellow star)', refLogits: s.refWeights.m.map(Math.log), rewards: [...s.rewards.m] },
    mPrime: { label: "m' (red star)", refLogits: s.refWeights.mPrime.map(Math.log), rewards: [...s.rewards.mPrime] },
    beta: s.beta,
    y: 0,
    yPrime: 1,
    leak: s.leak,
  };
}

export interface ToyPreset {
  id: string;
  title: string;
  /** one sentence for the page: what this world shows */
  summary: string;
  settings: ToySettings;
}

export const TOY_PRESETS: ToyPreset[] = [
  {
    id: 'prior',
    title: 'A language prior',
    summary:
      'The reference says “red” a lot, whatever it sees. A wrong answer is equally wrong in either image, yet Z(m′,x) > Z(m,x): the reference already puts its mass where m′’s reward is.',
    settings: {
      refWeights: { m: [0.45, 0.5, 0.1, 0.05], mPrime: [0.1, 0.85, 0.05, 0.05] },
      rewards: { m: [1, -1, -1, -1.5], mPrime: [-1, 1, -1, -1.5] },
      beta: 0.5,
      leak: 0.25,
    },
  },
  {
    id: 'mirror',
    title: 'Mirror images',
    summary:
      'm′ is m with the two colours swapped, in the reference and in the rewards alike: Z(m,x) = Z(m′,x), and image swap happens to be unbiased.',
    settings: {
      refWeights: { m: [0.6, 0.3, 0.15, 0.1], mPrime: [0.3, 0.6, 0.15, 0.1] },
      rewards: { m: [1, -1, -1, -1.5], mPrime: [-1, 1, -1, -1.5] },
      beta: 0.5,
      leak: 0.25,
    },
  },
  {
    id: 'wrong',
    title: 'A hard image (wrong preference)',
    summary:
      'm is a faint star: even the right answer earns little there, while m′ is easy and its right answer earns a lot. The residual is larger than the true margin and points the other way.',
    settings: {
      refWeights: { m: [0.2, 0.45, 0.1, 0.6], mPrime: [0.15, 0.9, 0.1, 0.05] },
      rewards: { m: [0.4, -0.4, -0.5, 0.2], mPrime: [-0.3, 1.6, -0.8, -1] },
      beta: 0.5,
      leak: 0.25,
    },
  },
];

export function toyPreset(id: string): ToyPreset {
  const p = TOY_PRESETS.find((x) => x.id === id);
  if (!p) throw new Error(`unknown toy preset "${id}": choose one of ${TOY_PRESETS.map((x) => x.id).join(', ')}`);
  return p;
}
