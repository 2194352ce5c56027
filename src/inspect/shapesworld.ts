/**
 * A ShapesWorld preference pair for the inspector, a pure function of its seed and options (the page puts
 * them in its URL; `vco-lab margins --shapesworld SEED` rebuilds the same pair): m, its exact contrastive edit
 * m′, the description question, y = describe(m), y′ = describe(m′), and the character spans of what changed.
 */
import { type EditType, type Scenario, makePreferenceSample, syntheticNegative } from '../data/edits.js';
import { render, type SceneImage } from '../data/raster.js';
import { deriveSeed, rng } from '../util/prng.js';
import type { Span } from '../model/prompts.js';

export interface PairOptions {
  /** the edit kind (default: any) */
  type?: EditType;
  /** A: realise a hallucinated detail in m′; B: inject a contradiction of y (default: either) */
  scenario?: Scenario;
  /** 'synthetic': m′ re-generated from y′ (new layout, background, style) instead of the exact edit */
  negative?: 'edited' | 'synthetic';
}

export interface InspectorPair {
  seed: number;
  options: PairOptions;
  m: SceneImage;
  mPrime: SceneImage;
  question: string;
  chosen: string;
  rejected: string;
  chosenSpans: Span[];
  rejectedSpans: Span[];
  /** what the edit did, in words */
  edit: string;
}

export function shapesworldPair(seed: number, o: PairOptions = {}): InspectorPair {
  const s = makePreferenceSample(seed, { type: o.type, scenario: o.scenario });
  const mPrime = o.negative === 'synthetic' ? syntheticNegative(s, rng(deriveSeed(seed, 7919))) : s.mPrime;
  const what = `${s.edit.type} edit, scenario ${s.edit.scenario}${o.negative === 'synthetic' ? ' (m′ re-generated from y′)' : ''}`;
  return {
    seed,
    options: o,
    m: render(s.m),
    mPrime: render(mPrime),
    question: s.prompt,
    chosen: s.chosen,
    rejected: s.rejected,
    chosenSpans: s.chosenSpans.map(([a, b]) => [a, b] as Span),
    rejectedSpans: s.rejectedSpans.map(([a, b]) => [a, b] as Span),
    edit: what,
  };
}
