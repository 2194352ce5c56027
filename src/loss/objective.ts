/**
 * The frame every objective plugs into: validated inputs as autodiff leaves, the direction layout, the
 * DPO building blocks, and `evaluate`, which runs one objective on a batch and returns the loss, its
 * terms, dL/ds for every policy score, and diagnostics.
 */
import { Scalar, sigmoid, softplus } from './scalar.js';
import {
  type DirectionTrace,
  type Img,
  type LossResult,
  type PreferenceScores,
  type Resp,
  type SeqKey,
  type SequenceRequirement,
  type SequenceScores,
  ScoreInputError,
} from './types.js';

export interface Built {
  loss: Scalar;
  terms: Record<string, Scalar | number>;
  metrics: Record<string, number>;
  directions: DirectionTrace[];
}

export interface Objective<C> {
  /** registry id, e.g. 'icvco' */
  id: string;
  title: string;
  /** where the formula comes from (paper equation, official code file) */
  source: string;
  defaults(): C;
  /** the sequence scores (and their token masks) the engine must compute for this config */
  requirements(config: C): SequenceRequirement[];
  build(inputs: Inputs, config: C): Built;
}

/** Policy scores become autodiff leaves; reference scores are constants (the reference is frozen). */
export class Inputs {
  private readonly leaves: Array<Map<SeqKey, Scalar>>;
  constructor(
    readonly batch: ReadonlyArray<PreferenceScores>,
    required: ReadonlyArray<SequenceRequirement>,
  ) {
    if (batch.length === 0) throw new ScoreInputError('empty batch: pass at least one preference sample');
    batch.forEach((s, b) => {
      for (const { key } of required) {
        for (const side of ['policy', 'reference'] as const) {
          const v = s[side]?.[key];
          if (typeof v !== 'number') {
            throw new ScoreInputError(
              `sample ${b}: ${side} score "${key}" is missing; this objective needs ` +
                `${required.map((r) => r.key).join(', ')}`,
            );
          }
          if (!Number.isFinite(v)) {
            throw new ScoreInputError(
              `sample ${b}: ${side} score "${key}" is ${v}; sequence scores must be finite ` + `sums of token log-probs`,
            );
          }
        }
      }
    });
    this.leaves = batch.map(() => new Map());
  }

  get size(): number {
    return this.batch.length;
  }

  pol(b: number, key: SeqKey): Scalar {
    let leaf = this.leaves[b].get(key);
    if (!leaf) {
      leaf = new Scalar(this.batch[b].policy[key] as number);
      this.leaves[b].set(key, leaf);
    }
    return leaf;
  }

  ref(b: number, key: SeqKey): number {
    return this.batch[b].reference[key] as number;
  }

  /** log π(key) - log π_ref(key) */
  logRatio(b: number, key: SeqKey): Scalar {
    return Scalar.linear([
      [this.pol(b, key), 1],
      [this.ref(b, key), -1],
    ]);
  }

  grads(): SequenceScores[] {
    return this.leaves.map((m) => Object.fromEntries([...m].map(([k, v]) => [k, v.grad])) as SequenceScores);
  }
}

/** One symmetric direction of a sample: the target image, its faithful (chosen) and unfaithful (rejected) answers. */
export interface Direction {
  sample: number;
  target: Img;
  other: Img;
  chosen: Resp;
  rejected: Resp;
  pos: 1 | 2;
}

/**
 * Target m (y ≻ y') for every sample, then target m' (y' ≻ y) for every sample: the official code's row
 * order. `pos` is the target's slot in the shared context [m, m'] (or [m', m] when swapped).
 */
export function directions(batch: ReadonlyArray<PreferenceScores>): Direction[] {
  const out: Direction[] = [];
  for (const target of ['m', "m'"] as const) {
    batch.forEach((s, sample) => {
      const first: Img = s.swap ? "m'" : 'm';
      out.push({
        sample,
        target,
        other: target === 'm' ? "m'" : 'm',
        chosen: target === 'm' ? 'y' : "y'",
        rejected: target === 'm' ? "y'" : 'y',
        pos: target === first ? 1 : 2,
      });
    });
  }
  return out;
}

export const key = (ctx: Img | `M>${Img}` | 'x', resp: Resp): SeqKey => `${ctx}|${resp}`;

/** DPO's implicit margin h = log-ratio(chosen) - log-ratio(rejected), in nats (β not applied) */
export function margin(inp: Inputs, b: number, chosen: SeqKey, rejected: SeqKey): Scalar {
  return Scalar.linear([
    [inp.pol(b, chosen), 1],
    [inp.ref(b, chosen), -1],
    [inp.pol(b, rejected), -1],
    [inp.ref(b, rejected), 1],
  ]);
}

/** -log σ(β h): the sigmoid DPO loss (TRL `loss_type="sigmoid"`) */
export function dpoLoss(h: Scalar, beta: number): Scalar {
  return h.scale(beta).logSigmoid().neg();
}

/** -log σ(β (log π(y) - log π_ref(y)) - δ): the anchor of mDPO and IC-VCO */
export function anchorLoss(logRatio: Scalar, beta: number, delta = 0): Scalar {
  return logRatio.scale(beta).add(-delta).logSigmoid().neg();
}

/**
 * Binary cross-entropy of a student logit z against a soft target t: -[t log σ(z) + (1-t) log σ(-z)].
 * Written with softplus so it is exact where PyTorch's BCE on probabilities clamps its logs at -100.
 */
export function bceWithLogit(z: Scalar, t: Scalar): Scalar {
  // value t·softplus(-z) + (1-t)·softplus(z), where a coefficient that is exactly 0 drops its term (no 0·Inf);
  // d/dz = σ(z) - t and d/dt = -z, the closed forms
  const tv = t.value;
  const value = (tv === 0 ? 0 : tv * softplus(-z.value)) + (tv === 1 ? 0 : (1 - tv) * softplus(z.value));
  return new Scalar(value, [
    [z, sigmoid(z.value) - tv],
    [t, -z.value],
  ]);
}

/** A mean that stays finite for finite inputs however large (a diagnostic must never read NaN). */
export function finiteMean(xs: ReadonlyArray<number>): number {
  if (xs.length === 0) return 0;
  const cap = Number.MAX_VALUE / xs.length;
  let s = 0;
  for (const x of xs) s += Math.max(-cap, Math.min(cap, x)) / xs.length;
  return s;
}

/**
 * TRL's reward diagnostics for one set of preference pairs: rewards/chosen = β(log π - log π_ref) of the
 * chosen response, rewards/rejected likewise, margins = their difference, accuracies = strict chosen >
 * rejected (ties count 0, as TRL). With `prefix` 'single_' the keys read 'single_rewards/chosen';
 * pos1_/pos2_ variants split by the target's slot in the shared context.
 */
export function rewardMetrics(
  prefix: string,
  pairs: ReadonlyArray<{ chosen: number; rejected: number; pos?: 1 | 2; logpChosen?: number; logpRejected?: number }>,
  withPositions = true,
): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (
    p: string,
    sel: ReadonlyArray<{ chosen: number; rejected: number; logpChosen?: number; logpRejected?: number }>,
  ) => {
    out[`${p}rewards/chosen`] = finiteMean(sel.map((x) => x.chosen));
    out[`${p}rewards/rejected`] = finiteMean(sel.map((x) => x.rejected));
    out[`${p}rewards/margins`] = finiteMean(sel.map((x) => safeDiff(x.chosen, x.rejected)));
    out[`${p}rewards/accuracies`] = finiteMean(sel.map((x) => (x.chosen > x.rejected ? 1 : 0)));
    // TRL's logps/chosen and logps/rejected: the policy's own sequence log-probs (the paper's Figure 4)
    if (sel.length && sel.every((x) => x.logpChosen !== undefined)) {
      out[`${p}logps/chosen`] = finiteMean(sel.map((x) => x.logpChosen!));
      out[`${p}logps/rejected`] = finiteMean(sel.map((x) => x.logpRejected!));
    }
  };
  put(prefix, pairs);
  if (withPositions) {
    for (const pos of [1, 2] as const) {
      const sel = pairs.filter((x) => x.pos === pos);
      if (sel.length) put(`${prefix}pos${pos}_`, sel);
    }
  }
  return out;
}

function safeDiff(a: number, b: number): number {
  const d = a - b;
  return Number.isFinite(d) || !Number.isFinite(a) || !Number.isFinite(b) ? d : 2 * (a / 2 - b / 2);
}

/** β·log-ratio of chosen and rejected: the pair that rewardMetrics reads */
export function rewardPair(inp: Inputs, b: number, chosen: SeqKey, rejected: SeqKey, beta: number, pos?: 1 | 2) {
  return { chosen: beta * inp.logRatio(b, chosen).value, rejected: beta * inp.logRatio(b, rejected).value, pos };
}

export function evaluate<C>(objective: Objective<C>, config: C, batch: ReadonlyArray<PreferenceScores>): LossResult {
  const inputs = new Inputs(batch, objective.requirements(config));
  const built = objective.build(inputs, config);
  built.loss.backward();
  const terms: Record<string, number> = {};
  for (const [k, v] of Object.entries(built.terms)) terms[k] = typeof v === 'number' ? v : v.value;
  return { loss: built.loss.value, terms, grads: inputs.grads(), metrics: built.metrics, directions: built.directions };
}

export { sigmoid };
