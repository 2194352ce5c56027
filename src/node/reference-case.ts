/**
 * Reference cases (../shared/reference, made by refgen.py with HF transformers + PEFT in float64): reading
 * case.json, turning its expected token log-probs into the loss module's sequence scores, and checking the
 * loss module against the case's loss values, dL/ds and VCDist gates.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate } from '../loss/objective.js';
import { icvco, icvcoConfig } from '../loss/icvco.js';
import type { IcVcoConfig } from '../loss/icvco.js';
import type { PreferenceScores, SeqKey } from '../loss/types.js';

export interface CaseSequence {
  sample: number;
  direction: 1 | 2;
  branch: 'single' | 'multi';
  role: 'chosen' | 'rejected';
  input_ids: number[];
  images: string[];
  response_start: number;
  score_mask: number[];
  policy_token_logprobs: number[];
  reference_token_logprobs: number[];
}

export interface CaseLoss {
  value: number;
  dloss_dsequence_logp: Record<'single' | 'multi', Record<'c' | 'r', number[]>>;
  h_single: number[];
  h_multi: number[];
  p_single: number[];
  p_multi: number[];
  vcdist_active: number[];
}

export interface ReferenceCase {
  dir: string;
  family: string;
  samples: Array<{ question: string; chosen: string; rejected: string; swap: boolean; m?: number[]; m_contrast?: number[] }>;
  tokensPerImage?: number;
  imageSize?: number;
  sequences: CaseSequence[];
  hyperparameters: { paper: Record<string, number>; reference_code: Record<string, number> };
  loss: { paper: CaseLoss; 'reference-code': CaseLoss };
}

export class CaseFormatError extends Error {
  constructor(file: string, field: string, problem: string) {
    super(`${file}: field "${field}" ${problem}`);
    this.name = 'CaseFormatError';
  }
}

export function loadCase(dir: string): ReferenceCase {
  const file = join(dir, 'case.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT')
      throw new Error(`${file} not found: pass a case folder such as ../shared/reference/idefics3-public`, { cause: e });
    throw new Error(`${file} is not valid JSON (${err.message}); regenerate it with refgen.py`, { cause: e });
  }
  const c = raw as Record<string, unknown>;
  const need = (obj: Record<string, unknown>, field: string, path: string) => {
    if (obj[field] === undefined) throw new CaseFormatError(file, `${path}${field}`, 'is missing');
    return obj[field];
  };
  const samples = need(c, 'samples', '') as ReferenceCase['samples'];
  const sequences = need(c, 'sequences', '') as CaseSequence[];
  if (!Array.isArray(samples) || samples.length === 0) throw new CaseFormatError(file, 'samples', 'must be a non-empty list');
  if (!Array.isArray(sequences)) throw new CaseFormatError(file, 'sequences', 'must be a list');
  sequences.forEach((s, i) => {
    for (const f of [
      'sample',
      'direction',
      'branch',
      'role',
      'score_mask',
      'policy_token_logprobs',
      'reference_token_logprobs',
    ]) {
      need(s as unknown as Record<string, unknown>, f, `sequences[${i}].`);
    }
    if (s.score_mask.length !== s.policy_token_logprobs.length || s.score_mask.length !== s.reference_token_logprobs.length) {
      throw new CaseFormatError(
        file,
        `sequences[${i}].score_mask`,
        `has ${s.score_mask.length} entries but the token log-prob lists have ${s.policy_token_logprobs.length} and ` +
          `${s.reference_token_logprobs.length}: all three cover the response tokens`,
      );
    }
    if (s.sample < 0 || s.sample >= samples.length) {
      throw new CaseFormatError(file, `sequences[${i}].sample`, `is ${s.sample}, but there are ${samples.length} samples`);
    }
  });
  const hp = need(c, 'hyperparameters', '') as ReferenceCase['hyperparameters'];
  need(hp as unknown as Record<string, unknown>, 'paper', 'hyperparameters.');
  need(hp as unknown as Record<string, unknown>, 'reference_code', 'hyperparameters.');
  const loss = need(c, 'loss', '') as ReferenceCase['loss'];
  for (const p of ['paper', 'reference-code'] as const) {
    const l = need(loss as unknown as Record<string, unknown>, p, 'loss.') as Record<string, unknown>;
    for (const f of ['value', 'dloss_dsequence_logp', 'vcdist_active']) need(l, f, `loss.${p}.`);
  }
  return {
    dir,
    family: String(c.family ?? ''),
    samples,
    sequences,
    hyperparameters: hp,
    loss,
    tokensPerImage: c.tokens_per_image as number | undefined,
    imageSize: c.image_size as number | undefined,
  };
}

/** Which sequence score a case row is: direction 1 targets m (y ≻ y'), direction 2 targets m' (y' ≻ y). */
export function sequenceKey(s: Pick<CaseSequence, 'direction' | 'branch' | 'role'>): SeqKey {
  const target = s.direction === 1 ? 'm' : "m'";
  const resp = (s.direction === 1) === (s.role === 'chosen') ? 'y' : "y'";
  return `${s.branch === 'multi' ? `M>${target}` : target}|${resp}` as SeqKey;
}

/** Σ token log-prob × score_mask, per sequence: the inputs of the loss module */
export function maskedScore(tokenLogprobs: ReadonlyArray<number>, mask: ReadonlyArray<number>): number {
  let s = 0;
  for (let i = 0; i < tokenLogprobs.length; i++) if (mask[i]) s += tokenLogprobs[i];
  return s;
}

export function caseScores(
  c: ReferenceCase,
  tokenLogprobs?: (seqIndex: number) => { policy: number[]; reference: number[] },
): PreferenceScores[] {
  const batch: PreferenceScores[] = c.samples.map((s) => ({ policy: {}, reference: {}, swap: Boolean(s.swap) }));
  c.sequences.forEach((s, i) => {
    const k = sequenceKey(s);
    const lp = tokenLogprobs ? tokenLogprobs(i) : { policy: s.policy_token_logprobs, reference: s.reference_token_logprobs };
    batch[s.sample].policy[k] = maskedScore(lp.policy, s.score_mask);
    batch[s.sample].reference[k] = maskedScore(lp.reference, s.score_mask);
  });
  return batch;
}

/** The case's hyper-parameters as a full IC-VCO config; an unknown name is an error, never ignored. */
export function presetConfig(c: ReferenceCase, preset: 'paper' | 'reference-code'): IcVcoConfig {
  const hp = preset === 'paper' ? c.hyperparameters.paper : c.hyperparameters.reference_code;
  const base = icvcoConfig(preset as 'paper');
  for (const k of Object.keys(hp)) {
    if (!(k in base) || k === 'preset') {
      throw new CaseFormatError(
        join(c.dir, 'case.json'),
        `hyperparameters.${preset === 'paper' ? 'paper' : 'reference_code'}.${k}`,
        `is not a setting of the ${preset} preset (${Object.keys(base)
          .filter((x) => x !== 'preset')
          .join(', ')})`,
      );
    }
  }
  return { ...base, ...hp } as IcVcoConfig;
}

export const LOSS_ONLY_TOLERANCES = { loss_rel: 1e-9, dlds_abs: 1e-9, margin_abs: 1e-9, prob_abs: 1e-9 };

export interface PresetCheck {
  loss: { value: number; expected: number; rel_err: number };
  dlds_max_abs_err: number;
  h_max_abs_err: number;
  p_max_abs_err: number;
  gate_mismatches: number;
  pass: boolean;
}

export interface LossCheck {
  case: string;
  family: string;
  mode: 'loss-only';
  presets: Record<'paper' | 'reference-code', PresetCheck>;
  max_errors: { loss_rel: number; dlds_abs: number; margin_abs: number; prob_abs: number; gate_mismatches: number };
  tolerances: typeof LOSS_ONLY_TOLERANCES;
  pass: boolean;
}

const maxAbs = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

export function checkPreset(
  c: ReferenceCase,
  preset: 'paper' | 'reference-code',
  scores: PreferenceScores[],
  tol = LOSS_ONLY_TOLERANCES,
): PresetCheck {
  const res = evaluate(icvco, presetConfig(c, preset), scores);
  const exp = c.loss[preset];
  const relErr = Math.abs(res.loss - exp.value) / Math.max(Math.abs(exp.value), 1e-300);
  let dlds = 0;
  // the case lists dL/ds per branch for the chosen (c) and rejected (r) rows: direction 1 of every sample,
  // then direction 2, i.e. the loss module's own direction order
  for (const branch of ['single', 'multi'] as const) {
    for (const role of ['c', 'r'] as const) {
      const got = res.directions.map((d) => {
        const target = d.target;
        const resp = (target === 'm') === (role === 'c') ? 'y' : "y'";
        const k = `${branch === 'multi' ? `M>${target}` : target}|${resp}` as SeqKey;
        return res.grads[d.sample][k] ?? 0;
      });
      dlds = Math.max(dlds, maxAbs(got, exp.dloss_dsequence_logp[branch][role]));
    }
  }
  const col = (q: string) => res.directions.map((d) => Number(d[q] ?? NaN));
  const h = Math.max(maxAbs(col('h_single'), exp.h_single ?? []), maxAbs(col('h_multi'), exp.h_multi ?? []));
  const p = Math.max(maxAbs(col('p_single'), exp.p_single ?? []), maxAbs(col('p_multi'), exp.p_multi ?? []));
  const gates = col('vcdist_active');
  const gateMismatches =
    exp.vcdist_active.length !== gates.length
      ? Math.max(exp.vcdist_active.length, gates.length)
      : gates.filter((g, i) => g !== exp.vcdist_active[i]).length;
  const pass = relErr <= tol.loss_rel && dlds <= tol.dlds_abs && h <= tol.margin_abs && p <= tol.prob_abs && gateMismatches === 0;
  return {
    loss: { value: res.loss, expected: exp.value, rel_err: relErr },
    dlds_max_abs_err: dlds,
    h_max_abs_err: h,
    p_max_abs_err: p,
    gate_mismatches: gateMismatches,
    pass,
  };
}

export function checkLossOnly(c: ReferenceCase): LossCheck {
  const scores = caseScores(c);
  const paper = checkPreset(c, 'paper', scores);
  const code = checkPreset(c, 'reference-code', scores);
  const both = [paper, code];
  return {
    case: c.dir,
    family: c.family,
    mode: 'loss-only',
    presets: { paper, 'reference-code': code },
    max_errors: {
      loss_rel: Math.max(...both.map((x) => x.loss.rel_err)),
      dlds_abs: Math.max(...both.map((x) => x.dlds_max_abs_err)),
      margin_abs: Math.max(...both.map((x) => x.h_max_abs_err)),
      prob_abs: Math.max(...both.map((x) => x.p_max_abs_err)),
      gate_mismatches: both.reduce((a, x) => a + x.gate_mismatches, 0),
    },
    tolerances: LOSS_ONLY_TOLERANCES,
    pass: both.every((x) => x.pass),
  };
}

/** the case's samples as the engine takes them: prompts per context from the case's own token ids */
export function caseEngineSamples(c: ReferenceCase): import('../engine/sample.js').EngineSample[] {
  return c.samples.map((smp, k) => {
    const rows = c.sequences.filter((s) => s.sample === k);
    const row = (direction: 1 | 2, branch: 'single' | 'multi', role: 'chosen' | 'rejected') => {
      const r = rows.find((s) => s.direction === direction && s.branch === branch && s.role === role);
      if (!r)
        throw new CaseFormatError(
          join(c.dir, 'case.json'),
          'sequences',
          `lacks sample ${k} direction ${direction} ${branch} ${role}`,
        );
      return r;
    };
    const img = (name: string) => Float32Array.from((name === 'm' ? smp.m : smp.m_contrast) ?? []);
    const asImg = (name: string) => (name === 'm' ? 'm' : "m'") as 'm' | "m'";
    const prompt = (r: CaseSequence) => r.input_ids.slice(0, r.response_start);
    const resp = (r: CaseSequence) => r.input_ids.slice(r.response_start);
    const yRow = row(1, 'single', 'chosen'),
      ypRow = row(1, 'single', 'rejected');
    return {
      id: `${c.dir}#${k}`,
      images: { m: [img('m')], "m'": [img('m_contrast')] },
      prompts: {
        m: prompt(yRow),
        "m'": prompt(row(2, 'single', 'chosen')),
        'M>m': prompt(row(1, 'multi', 'chosen')),
        "M>m'": prompt(row(2, 'multi', 'chosen')),
      },
      contextImages: {
        m: yRow.images.map(asImg),
        "m'": row(2, 'single', 'chosen').images.map(asImg),
        'M>m': row(1, 'multi', 'chosen').images.map(asImg),
        "M>m'": row(2, 'multi', 'chosen').images.map(asImg),
      },
      responses: { y: resp(yRow), "y'": resp(ypRow) },
      spanMasks: { y: yRow.score_mask, "y'": ypRow.score_mask },
      swap: Boolean(smp.swap),
    };
  });
}
