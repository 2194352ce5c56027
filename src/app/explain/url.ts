/**
 * The explainer's state in the URL hash (`#/explain?step=3&preset=wrong&rm=0.4,-0.4,-0.5,0.2&...`): a preset
 * and only the values that differ from it, so a lecturer's link stays short and reproduces the view exactly.
 * Pure: the browser test reads a page's URL back with these functions.
 */
import { TOY_PRESETS, type ToySettings, toyPreset } from '../../loss/partition';

export const STEPS = [
  { id: 'world', title: 'A world you can sum' },
  { id: 'partition', title: 'The partition function' },
  { id: 'compare', title: 'Two ways to compare' },
  { id: 'train', title: 'Training' },
  { id: 'sample', title: 'Your sample' },
  { id: 'equations', title: 'The equations' },
] as const;

/** slider ranges: weights are normalised into π_ref, rewards are in the same units as β log Z */
export const RANGES = {
  weight: { min: 0.01, max: 1, step: 0.01 },
  reward: { min: -2, max: 2, step: 0.05 },
  beta: { min: 0.05, max: 2, step: 0.05 },
  leak: { min: 0, max: 1, step: 0.05 },
} as const;

/** steps the training animation runs to: both objectives sit at their fixed points to well below display precision */
export const TRAIN_STEPS = 1500;

export type PairsMode = 'exact' | 64 | 8;
export const PAIRS_MODES: PairsMode[] = ['exact', 64, 8];

export interface ExplainerState {
  /** 1-based step of the narrative */
  step: number;
  /** the preset the settings started from */
  preset: string;
  settings: ToySettings;
  /** training steps taken (step 4) */
  t: number;
  pairs: PairsMode;
}

const VECTORS = [
  ['wm', 'refWeights', 'm', 'weight'],
  ['wmp', 'refWeights', 'mPrime', 'weight'],
  ['rm', 'rewards', 'm', 'reward'],
  ['rmp', 'rewards', 'mPrime', 'reward'],
] as const;

const clamp = (x: number, r: { min: number; max: number }) => Math.min(r.max, Math.max(r.min, x));
/** shortest decimal that reads back as the slider's value (no 0.30000000000000004) */
const fmt = (x: number) => String(Math.round(x * 1e6) / 1e6);

export function cloneSettings(s: ToySettings): ToySettings {
  return {
    refWeights: { m: [...s.refWeights.m], mPrime: [...s.refWeights.mPrime] },
    rewards: { m: [...s.rewards.m], mPrime: [...s.rewards.mPrime] },
    beta: s.beta,
    leak: s.leak,
  };
}

export function defaultState(): ExplainerState {
  return { step: 1, preset: TOY_PRESETS[0].id, settings: cloneSettings(TOY_PRESETS[0].settings), t: 0, pairs: 'exact' };
}

export function readExplainerUrl(hash: string): ExplainerState {
  const q = new URLSearchParams(hash.split('?')[1] ?? '');
  const out = defaultState();
  const step = Number(q.get('step'));
  if (Number.isInteger(step) && step >= 1 && step <= STEPS.length) out.step = step;
  const preset = q.get('preset');
  if (preset && TOY_PRESETS.some((p) => p.id === preset)) out.preset = preset;
  out.settings = cloneSettings(toyPreset(out.preset).settings);
  const n = out.settings.rewards.m.length;
  for (const [param, group, ctx, range] of VECTORS) {
    const v = q.get(param)?.split(',').map(Number);
    // a hand-edited list of the wrong length or with a non-number keeps the preset's values
    if (v && v.length === n && v.every(Number.isFinite)) out.settings[group][ctx] = v.map((x) => clamp(x, RANGES[range]));
  }
  for (const k of ['beta', 'leak'] as const) {
    const raw = q.get(k);
    if (raw !== null && raw !== '' && Number.isFinite(Number(raw))) out.settings[k] = clamp(Number(raw), RANGES[k]);
  }
  const t = Number(q.get('t'));
  if (Number.isInteger(t) && t > 0) out.t = Math.min(t, TRAIN_STEPS);
  const pairs = q.get('pairs');
  if (pairs === '64' || pairs === '8') out.pairs = Number(pairs) as PairsMode;
  return out;
}

export function explainerHash(s: ExplainerState): string {
  const q = new URLSearchParams();
  q.set('step', String(s.step));
  q.set('preset', s.preset);
  const base = toyPreset(s.preset).settings;
  for (const [param, group, ctx] of VECTORS) {
    const v = s.settings[group][ctx];
    if (v.some((x, i) => x !== base[group][ctx][i])) q.set(param, v.map(fmt).join(','));
  }
  for (const k of ['beta', 'leak'] as const) if (s.settings[k] !== base[k]) q.set(k, fmt(s.settings[k]));
  if (s.t > 0) q.set('t', String(s.t));
  if (s.pairs !== 'exact') q.set('pairs', String(s.pairs));
  // commas need no escaping in a fragment, and a link with them stays readable
  return `#/explain?${q.toString().replace(/%2C/g, ',')}`;
}

/** true when the settings are the preset's own */
export function isPresetUnchanged(s: ExplainerState): boolean {
  return explainerHash({ ...s, step: 1, t: 0, pairs: 'exact' }) === `#/explain?step=1&preset=${s.preset}`;
}
