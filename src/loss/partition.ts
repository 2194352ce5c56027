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
 * Pure float64 math, no dependencies: the explainer page draws what these functions return.
 */
import { logSigmoid, logSumExp, sigmoid } from './scalar.js';

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
