/**
 * ShapesWorld preference sets: a pure function of the options, so a training run can be rebuilt from its
 * record (the page's resume, the trainers' run folders). Pair i draws from seed deriveSeed(seed, i): a share
 * of pairs about the planted prior (a non-yellow star; the rejected answer is the prior's), the rest exact
 * edits of the chosen kinds, with m′ the edited image or a synthetic one (same objects, new layout,
 * background and style); every other pair puts m′ first in the shared context.
 */
import {
  EDIT_TYPES,
  type EditType,
  type PreferenceSample,
  makePreferenceSample,
  makePriorSample,
  syntheticNegative,
} from './edits.js';
import { type Scene, deriveSeed, rng } from './world.js';

export interface SetOptions {
  pairs: number;
  seed: number;
  /** edit kinds to draw from (default: all three) */
  types?: readonly EditType[];
  /** share of pairs about the planted prior, 0..1 (default 0) */
  priorShare?: number;
  /** m′: the exact edit (default) or a synthetic re-generation */
  negative?: 'edited' | 'synthetic';
  /** probability that a star in the other pairs' scenes is yellow (default: the world's 0.95) */
  starYellow?: number;
}

export interface SetSample {
  index: number;
  /** 'prior' or the edit kind */
  kind: 'prior' | EditType;
  sample: PreferenceSample;
  /** the contrastive image's scene (the edited one, or the synthetic one) */
  mPrime: Scene;
  /** the shared context shows m′ first */
  swap: boolean;
}

export function validateSetOptions(o: SetOptions): void {
  const bad = (field: string, what: string) => {
    throw new Error(`ShapesWorld set: ${field} ${what}`);
  };
  if (!Number.isInteger(o.pairs) || o.pairs < 1 || o.pairs > 100_000)
    bad('pairs', `must be an integer from 1 to 100000 (got ${o.pairs})`);
  if (!Number.isInteger(o.seed) || o.seed < 0) bad('seed', `must be a non-negative integer (got ${o.seed})`);
  const share = o.priorShare ?? 0;
  if (!(share >= 0 && share <= 1)) bad('priorShare', `must be between 0 and 1 (got ${share})`);
  const types = o.types ?? EDIT_TYPES;
  if (!types.length && share < 1)
    bad('types', 'must name at least one edit kind (existence, attribute, relation) unless every pair is about the prior');
  for (const t of types) if (!EDIT_TYPES.includes(t)) bad('types', `holds "${t}"; the kinds are ${EDIT_TYPES.join(', ')}`);
}

export function shapesworldSet(o: SetOptions): SetSample[] {
  validateSetOptions(o);
  const types = o.types ?? EDIT_TYPES,
    share = o.priorShare ?? 0;
  const nPrior = Math.round(share * o.pairs);
  const out: SetSample[] = [];
  for (let i = 0; i < o.pairs; i++) {
    const s = deriveSeed(o.seed, i);
    // prior pairs spread evenly through the set, so any prefix of it has about the same share
    const prior = Math.floor(((i + 1) * nPrior) / o.pairs) > Math.floor((i * nPrior) / o.pairs);
    const type = types[i % Math.max(1, types.length)];
    const sample = prior ? makePriorSample(s) : makePreferenceSample(s, { type, starYellow: o.starYellow });
    const mPrime = o.negative === 'synthetic' ? syntheticNegative(sample, rng(deriveSeed(s, 7919))) : sample.mPrime;
    out.push({ index: i, kind: prior ? 'prior' : sample.edit.type, sample, mPrime, swap: i % 2 === 1 });
  }
  return out;
}
