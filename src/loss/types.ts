/**
 * The shared vocabulary of every objective: which sequence scores a preference sample has, and what an
 * objective returns. A preference sample is (m, m', x, y, y'): y is the faithful answer to x for image m,
 * y' the faithful answer for the contrastive image m' (official IC-VCO format: images = [m, m'],
 * chosen = y, rejected = y').
 *
 * A sequence score s is a sum of token log-probs of one response in one context, under the token mask
 * that the objective asks for (see SequenceRequirement). Contexts:
 *
 *   key          context                                                   paper notation
 *   'm|y'        single image m, prompt x                                  π(y | m, x)
 *   "m'|y'"      single image m', prompt x                                 π(y' | m', x)
 *   'M>m|y'      shared two-image context M (both images, in the sample's    π(y | M, x̂)
 *                order) with the anchor prompt that targets m
 *   "M>m'|y"     the same M with the anchor prompt that targets m'          π(y | M, x̂')
 *   'x|y'        the prompt alone, no image (S-VCO's intermediate reference)  π(y | x)
 *
 * and every other combination of context and response.
 */

export type Img = 'm' | "m'";
export type Resp = 'y' | "y'";
export type Ctx = Img | `M>${Img}` | 'x';
export type SeqKey = `${Ctx}|${Resp}`;

export const SEQ_KEYS: readonly SeqKey[] = [
  'm|y',
  "m|y'",
  "m'|y",
  "m'|y'",
  'M>m|y',
  "M>m|y'",
  "M>m'|y",
  "M>m'|y'",
  'x|y',
  "x|y'",
];

/** Scores keyed by sequence; an objective reads only the keys its requirements name. */
export type SequenceScores = Partial<Record<SeqKey, number>>;

export interface SequenceRequirement {
  key: SeqKey;
  /**
   * 'span': only the tokens inside the response's edit spans count (EOS never), as the official
   * single-branch token mask; 'full': every response token plus EOS.
   */
  mask: 'span' | 'full';
}

export interface PreferenceScores {
  /** policy sequence scores (the adapter on) */
  policy: SequenceScores;
  /** reference sequence scores (the adapter off; frozen) */
  reference: SequenceScores;
  /**
   * true when the shared context puts m' first ([m', m]). Only the position diagnostics (pos1/pos2:
   * the anchored target sits in slot 1 or 2) use it; the loss does not depend on it.
   */
  swap?: boolean;
}

/** Per-direction values, in the official row order: every sample's target-m direction, then every target-m'. */
export interface DirectionTrace {
  sample: number;
  target: Img;
  /** 1 if the target image is first in the shared context, else 2 */
  pos: 1 | 2;
  [quantity: string]: number | string;
}

export interface LossResult {
  loss: number;
  /** named loss terms (unweighted and weighted), all float64 */
  terms: Record<string, number>;
  /** dL/ds for every policy score the objective read, per sample */
  grads: SequenceScores[];
  /** diagnostics under the names TRL and the official IC-VCO code log */
  metrics: Record<string, number>;
  /** per-direction margins, probabilities and gates */
  directions: DirectionTrace[];
}

export class ScoreInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScoreInputError';
  }
}
