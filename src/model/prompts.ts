/**
 * The official IC-VCO prompt construction (see shared notes, official-code-spec §1.4, §2): the question in a
 * single-image or a two-image user turn (images before the text), rendered by the checkpoint's chat template
 * with add_generation_prompt; in the two-image context the anchor instruction is appended verbatim
 * (" Answer based on the first image." / " ... second image."). Each image placeholder is expanded to the
 * family's image-token text (the image processor writes it), and the prompt is tokenized with no special
 * tokens added. The response is tokenized alone (no special tokens) and EOS is appended.
 *
 * Token masks for the single-image branch: from character spans (official `chosen_response_spans`: token k
 * counts iff its offset range is non-empty and overlaps a span strictly, EOS never), or, when a sample has
 * no spans, the tokens where the two responses differ (refgen.py's rule: positional compare up to the shorter
 * length, the longer one's extra tokens count, EOS never).
 */
import type { Img, SeqKey } from '../loss/types.js';
import type { ChatMessage, VlmTokenizer } from './tokenizer.js';

export const ANCHOR_SUFFIX = {
  first: ' Answer based on the first image.',
  second: ' Answer based on the second image.',
} as const;

export type AnchorPosition = keyof typeof ANCHOR_SUFFIX;
export type Span = readonly [number, number];

/** one image, then the question (make_single_image_prompt) */
export function singleImageMessages(question: string): ChatMessage[] {
  return [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }];
}

/** the question with no image: the text-only context x that S-VCO uses as an intermediate reference */
export function textOnlyMessages(question: string): ChatMessage[] {
  return [{ role: 'user', content: [{ type: 'text', text: question }] }];
}

/** two images, then the question with the anchor instruction appended (make_multi_image_prompts) */
export function multiImageMessages(
  question: string,
  anchor: AnchorPosition,
  anchors: Record<AnchorPosition, string> = ANCHOR_SUFFIX,
): ChatMessage[] {
  return [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: question + anchors[anchor] }] }];
}

/** put each image's text where its placeholder is, in order (as the HF processors split on the image token) */
export function expandImagePlaceholders(text: string, placeholder: string, imageTexts: readonly string[]): string {
  const parts = text.split(placeholder);
  if (parts.length - 1 !== imageTexts.length) {
    throw new Error(`the prompt has ${parts.length - 1} "${placeholder}" placeholders for ${imageTexts.length} images`);
  }
  let out = parts[0];
  imageTexts.forEach((t, i) => {
    out += t + parts[i + 1];
  });
  return out;
}

/** the prompt's ids: chat template with the generation prompt, images expanded, no special tokens added */
export function promptIds(
  tok: VlmTokenizer,
  messages: ChatMessage[],
  imageTexts: readonly string[],
  placeholder = '<image>',
): { text: string; ids: number[] } {
  const rendered = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
  const text = expandImagePlaceholders(rendered, placeholder, imageTexts);
  return { text, ids: tok.encode(text, { addSpecialTokens: false }).ids };
}

export interface EncodedResponse {
  /** response tokens then EOS */
  ids: number[];
  /** offsets of the response tokens (EOS has none) */
  offsets: [number, number][];
}

/** tokenizer(resp, add_special_tokens=False) + [eos] */
export function encodeResponse(tok: VlmTokenizer, response: string): EncodedResponse {
  const e = tok.encode(response, { addSpecialTokens: false });
  return { ids: [...e.ids, tok.eosId], offsets: e.offsets };
}

/**
 * prepare_token_mask: token k counts iff [ts, te) is non-empty and max(ts, ss) < min(te, se) for some span;
 * no spans -> all zero. One entry per offset; append 0 for EOS yourself (or use responseSpanMask).
 */
export function spanMask(offsets: readonly (readonly [number, number])[], spans: readonly Span[] | null | undefined): number[] {
  return offsets.map(([ts, te]) => (ts < te && (spans ?? []).some(([ss, se]) => Math.max(ts, ss) < Math.min(te, se)) ? 1 : 0));
}

/** the span mask of a response with EOS (which never counts) */
export function responseSpanMask(r: EncodedResponse, spans: readonly Span[] | null | undefined): number[] {
  return [...spanMask(r.offsets, spans), 0];
}

/**
 * refgen.py's single-branch masks from two responses (ids with EOS): positions up to the shorter length count
 * where the ids differ, the longer one's extra positions count, and the last position (EOS) never does.
 */
export function diffMasks(a: readonly number[], b: readonly number[]): [number[], number[]] {
  const n = Math.min(a.length, b.length);
  const m = (x: readonly number[]) => x.map((t, i) => (i >= n || t !== (x === a ? b : a)[i] ? 1 : 0));
  const ma = m(a),
    mb = m(b);
  if (ma.length) ma[ma.length - 1] = 0;
  if (mb.length) mb[mb.length - 1] = 0;
  return [ma, mb];
}

/** the 8 sequences of a preference sample with images (single-image and shared two-image contexts) */
export const IMAGE_SEQ_KEYS = [
  'm|y',
  "m|y'",
  "m'|y",
  "m'|y'",
  'M>m|y',
  "M>m|y'",
  "M>m'|y",
  "M>m'|y'",
] as const satisfies readonly SeqKey[];
export type ImageSeqKey = (typeof IMAGE_SEQ_KEYS)[number];

export interface PreferenceText {
  /** the question x */
  question: string;
  /** y, the faithful answer for m (official `chosen`) */
  chosen: string;
  /** y', the faithful answer for m' (official `rejected`) */
  rejected: string;
  /**
   * character spans into `chosen` / `rejected` (official `*_response_spans`); both absent (undefined/null):
   * the masks come from the token diff of the two responses; an empty list is an all-zero mask
   */
  chosenSpans?: readonly Span[] | null;
  rejectedSpans?: readonly Span[] | null;
  /** the shared context puts m' first ([m', m]) */
  swap: boolean;
}

export interface SequenceInput {
  key: ImageSeqKey;
  promptIds: number[];
  /** response ids, EOS last */
  responseIds: number[];
  /** promptIds then responseIds */
  inputIds: number[];
  /** index of the first response token in inputIds */
  responseStart: number;
  /** the sample's images in the order the prompt shows them */
  images: Img[];
  /** which response tokens count under the single-branch mask (EOS never) */
  spanMask: number[];
  /** every response token, EOS included */
  fullMask: number[];
  /** where spanMask came from */
  maskSource: 'spans' | 'diff';
  /** the two-image context's anchor ('first' / 'second'); absent for single-image sequences */
  anchor?: AnchorPosition;
}

export interface PromptContext {
  tokenizer: VlmTokenizer;
  /** each image's expanded text (ProcessedImage.text from the family's image processor) */
  imageText: Readonly<Record<Img, string>>;
  /** the placeholder the chat template writes (default '<image>') */
  placeholder?: string;
  /** anchor instructions (default the official strings) */
  anchors?: Record<AnchorPosition, string>;
}

/**
 * Every image sequence of one preference sample: prompt ids, response ids (EOS last), response_start, the
 * images in order, and the span and full masks. Keys follow src/loss/types.ts: 'm|y' is y after the single
 * image m; 'M>m|y' is y in the shared two-image context with the anchor that targets m (the sample's swap
 * decides whether m is first or second).
 */
export function preferenceSequences(sample: PreferenceText, ctx: PromptContext): Record<ImageSeqKey, SequenceInput> {
  const tok = ctx.tokenizer,
    ph = ctx.placeholder ?? '<image>';
  const resp = { y: encodeResponse(tok, sample.chosen), "y'": encodeResponse(tok, sample.rejected) };
  const haveSpans =
    (sample.chosenSpans !== undefined && sample.chosenSpans !== null) ||
    (sample.rejectedSpans !== undefined && sample.rejectedSpans !== null);
  let masks: Record<'y' | "y'", number[]>;
  if (haveSpans) {
    masks = { y: responseSpanMask(resp.y, sample.chosenSpans), "y'": responseSpanMask(resp["y'"], sample.rejectedSpans) };
  } else {
    const [a, b] = diffMasks(resp.y.ids, resp["y'"].ids);
    masks = { y: a, "y'": b };
  }
  const order: Img[] = sample.swap ? ["m'", 'm'] : ['m', "m'"];
  const single = {
    m: promptIds(tok, singleImageMessages(sample.question), [ctx.imageText.m], ph).ids,
    "m'": promptIds(tok, singleImageMessages(sample.question), [ctx.imageText["m'"]], ph).ids,
  };
  const anchorOf = (target: Img): AnchorPosition => (order[0] === target ? 'first' : 'second');
  const multi = {
    m: promptIds(
      tok,
      multiImageMessages(sample.question, anchorOf('m'), ctx.anchors),
      order.map((i) => ctx.imageText[i]),
      ph,
    ).ids,
    "m'": promptIds(
      tok,
      multiImageMessages(sample.question, anchorOf("m'"), ctx.anchors),
      order.map((i) => ctx.imageText[i]),
      ph,
    ).ids,
  };
  const out = {} as Record<ImageSeqKey, SequenceInput>;
  for (const key of IMAGE_SEQ_KEYS) {
    const [c, r] = key.split('|') as [string, 'y' | "y'"];
    const shared = c.startsWith('M>');
    const img = (shared ? c.slice(2) : c) as Img;
    const p = shared ? multi[img] : single[img];
    const ids = resp[r].ids;
    out[key] = {
      key,
      promptIds: p,
      responseIds: ids,
      inputIds: [...p, ...ids],
      responseStart: p.length,
      images: shared ? [...order] : [img],
      spanMask: masks[r],
      fullMask: ids.map(() => 1),
      maskSource: haveSpans ? 'spans' : 'diff',
      ...(shared ? { anchor: anchorOf(img) } : {}),
    };
  }
  return out;
}
