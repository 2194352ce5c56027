/**
 * The margin inspector's numbers, computed once for the page (in the worker) and the CLI (`vco-lab margins`)
 * from the same engine code: one preference sample (m, m', x, y, y') scored in every context an objective
 * can ask for, policy (the engine's adapter on) against reference (off), and what the loss module makes of
 * it. The report is one JSON object in a versioned schema (docs/margins-schema.md), so a page export and a
 * CLI run of the same inputs can be compared leaf by leaf.
 */
import type { Engine } from '../engine/engine.js';
import type { ChatModel } from '../engine/rows.js';
import { type EngineSample, type SampleForward, engineSample, forwardSample } from '../engine/sample.js';
import { resolveObjective } from '../loss/registry.js';
import { evaluate } from '../loss/objective.js';
import type { DirectionTrace, Img, PreferenceScores, Resp, SeqKey, SequenceRequirement } from '../loss/types.js';
import type { PixelImage } from '../model/processor.js';
import { ANCHOR_SUFFIX, type Span } from '../model/prompts.js';

export const MARGINS_SCHEMA = 'vco-lab.margins/v1';

/** every sequence the report scores: four image contexts and the text-only x, each with both answers */
export const REPORT_KEYS = [
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
] as const satisfies readonly SeqKey[];
export type ReportKey = (typeof REPORT_KEYS)[number];
const SHARED_KEYS = ['M>m|y', "M>m|y'", "M>m'|y", "M>m'|y'"] as const;
type SharedKey = (typeof SHARED_KEYS)[number];

export type ImageOrder = 'm-first' | 'mprime-first';

export interface MarginsRequest {
  /** the question x */
  question: string;
  /** y, faithful to m */
  chosen: string;
  /** y′, faithful to m′ */
  rejected: string;
  /** character spans into chosen / rejected (the official *_response_spans); absent: the token-diff mask */
  chosenSpans?: Span[] | null;
  rejectedSpans?: Span[] | null;
  /** which image comes first in the shared two-image context */
  order: ImageOrder;
  /** a loss-module id ('icvco', 'icvco:reference-code', 'dpo', ...) */
  objective: string;
  /** the objective's settings that differ from its defaults */
  settings?: Record<string, unknown>;
}

export interface SequenceReport {
  /** the context: 'm', "m'", 'M>m' (shared context, anchor on m), "M>m'", or 'x' (no image) */
  context: string;
  response: Resp;
  /** response tokens as the tokenizer writes them, EOS last */
  tokens: string[];
  ids: number[];
  /** the single-branch token mask (spans, or the token diff when there are none); EOS never counts */
  mask: number[];
  /** per-token log-probs */
  policy: number[];
  reference: number[];
  /** Σ over every token (EOS included), and over the masked tokens only */
  score: { policy_full: number; reference_full: number; policy_masked: number; reference_masked: number };
  /** log π − log π_ref, full and masked */
  log_ratio: { full: number; masked: number };
}

export interface DirectionReport {
  /** the target image of this direction and its faithful answer */
  target: Img;
  chosen: Resp;
  rejected: Resp;
  /** 1 if the target is the first image of the shared context */
  pos: 1 | 2;
  /** IC-VCO's single-image margin [log-ratio](c|t) − [log-ratio](r|t), masked */
  h_single: number;
  /** IC-VCO's shared-context margin [log-ratio](c|M,x̂_t) − [log-ratio](r|M,x̂_t) */
  h_multi: number;
  p_single: number;
  p_multi: number;
  /** VCDist's correctness gate (p_multi > τ), confidence gate (p_single < p_multi), and whether it fires */
  gate_correct: boolean;
  gate_confident: boolean;
  vcdist_fires: boolean;
  /** the image-swap margin of visual DPO (Eq. 5-6): [log-ratio](c|t) − [log-ratio](c|other image), masked */
  h_image_swap: number;
  /** the policy's own preferences, no reference: log π(c|·) − log π(r|·) (single masked; shared full) */
  raw_single: number;
  raw_multi: number;
}

export interface ObjectiveReport {
  id: string;
  settings: Record<string, unknown>;
  loss: number;
  terms: Record<string, number>;
  metrics: Record<string, number>;
  /** dL/ds for every policy score the objective read: + pushes the score up in a gradient-descent step */
  dlds: Partial<Record<SeqKey, number>>;
  /** which scores, with which mask */
  requirements: SequenceRequirement[];
  directions: DirectionTrace[];
}

export interface MarginsReport {
  schema: typeof MARGINS_SCHEMA;
  model: { name: string; family: string; adapter: string | null; lora_modules: number; ep: string; int4: boolean };
  input: MarginsRequest & {
    /** the anchor instructions, verbatim as appended to the question in the shared context */
    anchors: { first: string; second: string };
    images: { m: { width: number; height: number }; m_prime: { width: number; height: number } };
    /** 'spans' when character spans were given, else 'token-diff' */
    mask_source: 'spans' | 'token-diff';
  };
  sequences: Record<ReportKey, SequenceReport>;
  /** the shared context with the images in the other order (position bias) */
  sequences_other_order: Record<SharedKey, SequenceReport>;
  /** per direction (target m, then target m′), with IC-VCO's τ */
  directions: DirectionReport[];
  /** h_multi with the images in both orders, per target */
  position_bias: Array<{ target: Img; h_multi_m_first: number; h_multi_mprime_first: number; difference: number }>;
  /** the objective asked for */
  objective: ObjectiveReport;
  /** image-swap visual DPO and IC-VCO (paper preset) on the same scores, at the objective's β where it has one */
  comparison: { visdpo: ObjectiveReport; icvco: ObjectiveReport };
  timing: { preprocess_ms: number; features_ms: number; scoring_ms: number; total_ms: number; backend: string };
}

export interface InspectModel extends ChatModel {
  engine: Engine;
  name: string;
  /** the adapter's name when one is on the engine */
  adapter?: string | null;
}

const FULL = (keys: readonly SeqKey[]): SequenceRequirement[] => keys.map((key) => ({ key, mask: 'full' }));

function abortIf(signal?: AbortSignal) {
  if (signal?.aborted) throw signal.reason ?? new DOMException('cancelled', 'AbortError');
}

const sum = (xs: ArrayLike<number>, mask?: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) if (!mask || mask[i]) s += xs[i];
  return s;
};

function sequenceReport(m: InspectModel, s: EngineSample, key: SeqKey, pol: SampleForward, ref: SampleForward): SequenceReport {
  const [context, response] = key.split('|') as [string, Resp];
  const ids = s.responses[response],
    mask = s.spanMasks[response];
  const p = Array.from(pol.tokens[key]!),
    r = Array.from(ref.tokens[key]!);
  const score = { policy_full: sum(p), reference_full: sum(r), policy_masked: sum(p, mask), reference_masked: sum(r, mask) };
  // a non-finite log-prob would flow into every margin and loss as NaN: stop with the sequence named
  for (const [side, xs] of [
    ['policy', p],
    ['reference', r],
  ] as const) {
    const t = xs.findIndex((x) => !Number.isFinite(x));
    if (t >= 0)
      throw new Error(
        `sequence ${key}: the ${side} log-prob of token ${t} ("${m.tokenizer.decode([ids[t]])}") is ${xs[t]}: ` +
          `the model${side === 'policy' ? ' with its adapter' : ''} computes non-finite values ` +
          '(an overflow in the forward pass, or weights damaged after loading); no margin is reported',
      );
  }
  return {
    context,
    response,
    ids,
    mask,
    policy: p,
    reference: r,
    score,
    tokens: ids.map((t) => m.tokenizer.decode([t])),
    log_ratio: { full: score.policy_full - score.reference_full, masked: score.policy_masked - score.reference_masked },
  };
}

/** the loss module on this sample's scores, with each requirement's mask */
function objectiveReport(
  spec: string,
  settings: Record<string, unknown>,
  seqs: Record<ReportKey, SequenceReport>,
  swap: boolean,
): ObjectiveReport {
  const { objective, config } = resolveObjective(spec, settings);
  const reqs = objective.requirements(config);
  const scores: PreferenceScores = { policy: {}, reference: {}, swap };
  for (const r of reqs) {
    const q = seqs[r.key as ReportKey];
    scores.policy[r.key] = r.mask === 'span' ? q.score.policy_masked : q.score.policy_full;
    scores.reference[r.key] = r.mask === 'span' ? q.score.reference_masked : q.score.reference_full;
  }
  const res = evaluate(objective, config, [scores]);
  return {
    id: spec,
    settings: config,
    loss: res.loss,
    terms: res.terms,
    metrics: res.metrics,
    dlds: res.grads[0],
    requirements: reqs,
    directions: res.directions,
  };
}

/**
 * Score one preference sample in every context and report the margins. The engine's adapter (if any) is the
 * policy, the bare model the reference (the official code's online reference).
 */
export async function computeMargins(
  m: InspectModel,
  images: { m: PixelImage; mPrime: PixelImage },
  req: MarginsRequest,
  o: { signal?: AbortSignal; onProgress?: (done: number, total: number, what: string) => void } = {},
): Promise<MarginsReport> {
  const t0 = performance.now();
  const swap = req.order === 'mprime-first';
  const pm = m.processor.process(images.m),
    pp = m.processor.process(images.mPrime);
  const text = {
    question: req.question,
    chosen: req.chosen,
    rejected: req.rejected,
    chosenSpans: req.chosenSpans,
    rejectedSpans: req.rejectedSpans,
  };
  const processed = { m: pm, "m'": pp };
  const sample = engineSample('inspect', { ...text, swap }, processed, m.tokenizer, m.placeholder);
  const other = engineSample('inspect-other-order', { ...text, swap: !swap }, processed, m.tokenizer, m.placeholder);
  const t1 = performance.now();
  const steps = 5;
  let done = 0;
  const step = (what: string) => o.onProgress?.(++done, steps, what);
  abortIf(o.signal);
  // the tower once per image; every context below reads the cached features
  await m.engine.features(pm.tiles, 'reference');
  await m.engine.features(pp.tiles, 'reference');
  const t2 = performance.now();
  step('image features');
  const hasAdapter = m.engine.lora.size > 0;
  abortIf(o.signal);
  const pol = await forwardSample(m.engine, sample, FULL(REPORT_KEYS), 'policy');
  step('policy');
  abortIf(o.signal);
  // without an adapter the policy is the reference
  const ref = hasAdapter ? await forwardSample(m.engine, sample, FULL(REPORT_KEYS), 'reference') : pol;
  step('reference');
  abortIf(o.signal);
  const polOther = await forwardSample(m.engine, other, FULL(SHARED_KEYS), 'policy');
  const refOther = hasAdapter ? await forwardSample(m.engine, other, FULL(SHARED_KEYS), 'reference') : polOther;
  step('the other image order');
  const t3 = performance.now();

  const sequences = Object.fromEntries(REPORT_KEYS.map((k) => [k, sequenceReport(m, sample, k, pol, ref)])) as Record<
    ReportKey,
    SequenceReport
  >;
  const sequencesOther = Object.fromEntries(
    SHARED_KEYS.map((k) => [k, sequenceReport(m, other, k, polOther, refOther)]),
  ) as Record<SharedKey, SequenceReport>;

  const objective = objectiveReport(req.objective, req.settings ?? {}, sequences, swap);
  const beta = typeof objective.settings.beta === 'number' ? { beta: objective.settings.beta } : {};
  const icvco = objectiveReport('icvco:paper', beta, sequences, swap);
  const comparison = { visdpo: objectiveReport('visdpo', beta, sequences, swap), icvco };
  const b = icvco.settings.beta as number,
    tau = icvco.settings.tau as number;

  const directions: DirectionReport[] = (['m', "m'"] as const).map((target) => {
    const [c, r]: [Resp, Resp] = target === 'm' ? ['y', "y'"] : ["y'", 'y'];
    const otherImg: Img = target === 'm' ? "m'" : 'm';
    const q = (k: string) => sequences[k as ReportKey];
    const hSingle = q(`${target}|${c}`).log_ratio.masked - q(`${target}|${r}`).log_ratio.masked;
    const hMulti = q(`M>${target}|${c}`).log_ratio.full - q(`M>${target}|${r}`).log_ratio.full;
    const pS = 1 / (1 + Math.exp(-b * hSingle)),
      pM = 1 / (1 + Math.exp(-b * hMulti));
    const correct = pM > tau,
      confident = pS < pM;
    return {
      target,
      chosen: c,
      rejected: r,
      pos: ((target === 'm') !== swap ? 1 : 2) as 1 | 2,
      h_single: hSingle,
      h_multi: hMulti,
      p_single: pS,
      p_multi: pM,
      gate_correct: correct,
      gate_confident: confident,
      vcdist_fires: correct && confident,
      h_image_swap: q(`${target}|${c}`).log_ratio.masked - q(`${otherImg}|${c}`).log_ratio.masked,
      raw_single: q(`${target}|${c}`).score.policy_masked - q(`${target}|${r}`).score.policy_masked,
      raw_multi: q(`M>${target}|${c}`).score.policy_full - q(`M>${target}|${r}`).score.policy_full,
    };
  });
  const position_bias = directions.map((d) => {
    const k = (x: string) => sequencesOther[x as SharedKey];
    const otherH = k(`M>${d.target}|${d.chosen}`).log_ratio.full - k(`M>${d.target}|${d.rejected}`).log_ratio.full;
    const [mFirst, mpFirst] = swap ? [otherH, d.h_multi] : [d.h_multi, otherH];
    return { target: d.target, h_multi_m_first: mFirst, h_multi_mprime_first: mpFirst, difference: mFirst - mpFirst };
  });
  const spansGiven =
    (req.chosenSpans !== undefined && req.chosenSpans !== null) ||
    (req.rejectedSpans !== undefined && req.rejectedSpans !== null);
  return {
    schema: MARGINS_SCHEMA,
    model: {
      name: m.name,
      family: m.spec.family,
      adapter: m.adapter ?? null,
      lora_modules: m.engine.lora.size,
      ep: m.engine.rt.ep,
      int4: m.engine.int4Modules > 0,
    },
    input: {
      ...req,
      chosenSpans: req.chosenSpans ?? null,
      rejectedSpans: req.rejectedSpans ?? null,
      settings: req.settings ?? {},
      anchors: { first: ANCHOR_SUFFIX.first, second: ANCHOR_SUFFIX.second },
      images: {
        m: { width: images.m.width, height: images.m.height },
        m_prime: { width: images.mPrime.width, height: images.mPrime.height },
      },
      mask_source: spansGiven ? 'spans' : 'token-diff',
    },
    sequences,
    sequences_other_order: sequencesOther,
    directions,
    position_bias,
    objective,
    comparison,
    timing: {
      preprocess_ms: t1 - t0,
      features_ms: t2 - t1,
      scoring_ms: t3 - t2,
      total_ms: performance.now() - t0,
      backend: `${m.engine.rt.ep}: ${m.engine.rt.detail}`,
    },
  };
}

/** the numeric leaves of a report (path -> value), for comparing two reports of the same inputs */
export function numericLeaves(x: unknown, path = '', out = new Map<string, number>()): Map<string, number> {
  if (typeof x === 'number') out.set(path, x);
  else if (Array.isArray(x)) x.forEach((v, i) => numericLeaves(v, `${path}[${i}]`, out));
  else if (x && typeof x === 'object') for (const [k, v] of Object.entries(x)) numericLeaves(v, path ? `${path}.${k}` : k, out);
  return out;
}
