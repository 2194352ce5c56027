/**
 * A preference sample as the engine scores it: four image contexts (m, m', and the shared two-image context
 * with the anchor prompt for each target), the text-only context x (S-VCO's intermediate reference), two
 * responses, and the single-branch span masks. Scoring runs one packed pass per context and returns the
 * sequence scores the loss module asks for.
 */
import type { Img, Resp, SeqKey, SequenceRequirement, SequenceScores } from '../loss/types.js';
import type { ProcessedImage } from '../model/processor.js';
import { type PreferenceText, preferenceSequences, promptIds, textOnlyMessages } from '../model/prompts.js';
import type { VlmTokenizer } from '../model/tokenizer.js';
import type { Engine, ForwardResult } from './engine.js';
import { addGradients } from './grads.js';

export type Ctx4 = Img | `M>${Img}`;
/** the contexts a sample is scored in: the four image contexts and the text-only x */
export type SampleContext = Ctx4 | 'x';
export const CONTEXTS: readonly SampleContext[] = ['m', "m'", 'M>m', "M>m'", 'x'];

export interface EngineSample {
  id: string;
  /** each image as the processor gives it: one [3, S, S] tile (LLaVA), or Idefics3's tiles and global image */
  images: Record<Img, Float32Array[]>;
  /** prompt ids per context, image tokens expanded (x: the question with no image, where built) */
  prompts: Record<Ctx4, number[]> & { x?: number[] };
  /** which images each context shows, in order (the shared context: [m, m'] or, swapped, [m', m]) */
  contextImages: Record<Ctx4, Img[]>;
  /** response ids, EOS included */
  responses: Record<Resp, number[]>;
  /** single-branch token masks (1 = the token counts), EOS never */
  spanMasks: Record<Resp, number[]>;
  swap: boolean;
}

export interface SampleForward {
  scores: SequenceScores;
  /** per-token log-probs of each scored sequence */
  tokens: Partial<Record<SeqKey, Float32Array>>;
  saved: Partial<Record<SampleContext, NonNullable<ForwardResult['saved']>>>;
}

const RESPS: readonly Resp[] = ['y', "y'"];

function maskFor(s: EngineSample, req: SequenceRequirement | undefined, resp: Resp): number[] {
  return req?.mask === 'span' ? s.spanMasks[resp] : s.responses[resp].map(() => 1);
}

/** contexts the requirements touch */
function contextsNeeded(s: EngineSample, reqs: ReadonlyArray<SequenceRequirement>): SampleContext[] {
  const need = new Set(reqs.map((r) => r.key.split('|')[0]));
  if (need.has('x') && !s.prompts.x) throw new Error(`sample ${s.id} has no text-only prompt (x), which this objective scores`);
  return CONTEXTS.filter((c) => need.has(c));
}

/** a context's prompt and images */
function contextInput(s: EngineSample, ctx: SampleContext): { prompt: number[]; images: Float32Array[] } {
  if (ctx === 'x') return { prompt: s.prompts.x!, images: [] };
  return { prompt: s.prompts[ctx], images: s.contextImages[ctx].flatMap((im) => s.images[im]) };
}

export async function forwardSample(
  e: Engine,
  s: EngineSample,
  reqs: ReadonlyArray<SequenceRequirement>,
  which: 'policy' | 'reference',
  o: { packed?: boolean; save?: boolean } = {},
): Promise<SampleForward> {
  const byKey = new Map(reqs.map((r) => [r.key, r]));
  const out: SampleForward = { scores: {}, tokens: {}, saved: {} };
  // the contexts are independent: run them concurrently (the runtime overlaps their sessions)
  const results = await Promise.all(
    contextsNeeded(s, reqs).map(async (ctx) => {
      const input = contextInput(s, ctx);
      if (o.packed !== false) {
        const r = await e.forward(input, [s.responses.y, s.responses["y'"]], which, o.save);
        return { ctx, lps: r.logprobs, saved: r.saved };
      }
      if (o.save) throw new Error('saving activations needs the packed forward');
      const lps = [
        (await e.forward(input, [s.responses.y], which)).logprobs[0],
        (await e.forward(input, [s.responses["y'"]], which)).logprobs[0],
      ];
      return { ctx, lps, saved: undefined };
    }),
  );
  for (const { ctx, lps, saved } of results) {
    if (saved) out.saved[ctx] = saved;
    RESPS.forEach((resp, k) => {
      const key = `${ctx}|${resp}` as SeqKey;
      const mask = maskFor(s, byKey.get(key), resp);
      let sc = 0;
      for (let t = 0; t < lps[k].length; t++) if (mask[t]) sc += lps[k][t];
      out.scores[key] = sc;
      out.tokens[key] = lps[k];
    });
  }
  return out;
}

/** back-propagate Σ_key (dL/ds_key)·s_key for one sample from its saved packed forwards */
export async function backwardSample(
  e: Engine,
  s: EngineSample,
  reqs: ReadonlyArray<SequenceRequirement>,
  fwd: SampleForward,
  dlds: SequenceScores,
  grads: Map<string, Float64Array>,
): Promise<void> {
  const byKey = new Map(reqs.map((r) => [r.key, r]));
  // contexts run concurrently, each into its own sums; those are added in a fixed order so runs repeat exactly
  const parts = await Promise.all(
    contextsNeeded(s, reqs).map(async (ctx) => {
      const saved = fwd.saved[ctx];
      if (!saved) throw new Error(`sample ${s.id}: context ${ctx} was not saved for the backward pass`);
      const seeds = RESPS.map((resp) => {
        const key = `${ctx}|${resp}` as SeqKey;
        const w = dlds[key] ?? 0;
        return Float32Array.from(maskFor(s, byKey.get(key), resp), (m) => m * w);
      });
      const mine = new Map<string, Float64Array>();
      if (seeds.some((sd) => sd.some((x) => x !== 0))) await e.backward(saved, [seeds], mine);
      return mine;
    }),
  );
  for (const mine of parts) addGradients(grads, mine);
}

/**
 * An EngineSample from a preference sample's text and its two processed images, with the official prompt
 * construction (model/prompts.ts): the four contexts' prompt ids, both responses (EOS last) and span masks.
 */
export function engineSample(
  id: string,
  text: PreferenceText,
  images: Record<Img, ProcessedImage>,
  tokenizer: VlmTokenizer,
  placeholder = '<image>',
): EngineSample {
  const q = preferenceSequences(text, { tokenizer, imageText: { m: images.m.text, "m'": images["m'"].text }, placeholder });
  return {
    id,
    images: { m: images.m.tiles, "m'": images["m'"].tiles },
    prompts: {
      m: q['m|y'].promptIds,
      "m'": q["m'|y"].promptIds,
      'M>m': q['M>m|y'].promptIds,
      "M>m'": q["M>m'|y"].promptIds,
      x: promptIds(tokenizer, textOnlyMessages(text.question), [], placeholder).ids,
    },
    contextImages: { m: ['m'], "m'": ["m'"], 'M>m': q['M>m|y'].images, "M>m'": q["M>m'|y"].images },
    responses: { y: q['m|y'].responseIds, "y'": q["m|y'"].responseIds },
    spanMasks: { y: q['m|y'].spanMask, "y'": q["m|y'"].spanMask },
    swap: text.swap,
  };
}
