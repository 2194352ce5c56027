/**
 * Rows for the batch path (`Engine.scoreRows`, `Engine.fusedGradient`) from chat-style questions: the
 * model's own chat template with the generation prompt, each image's placeholder expanded to its tokens, and
 * the responses packed behind the prompt.
 */
import type { ImageProcessor, PixelImage } from '../model/processor.js';
import { type AnchorPosition, encodeResponse, multiImageMessages, promptIds, singleImageMessages } from '../model/prompts.js';
import type { VlmTokenizer } from '../model/tokenizer.js';
import type { VlmSpec } from '../model/types.js';
import type { ScoreRow } from './feeds.js';

/** what turns text and images into rows: the spec, the tokenizer (with its chat template), the image processor */
export interface ChatModel {
  spec: VlmSpec;
  tokenizer: VlmTokenizer;
  processor: ImageProcessor;
  /** the chat template's image placeholder (default '<image>') */
  placeholder?: string;
}

/** the prompt of a question about one image, or about one of two named by the anchor instruction */
function questionPrompt(
  m: ChatModel,
  images: PixelImage | [PixelImage, PixelImage],
  question: string,
  anchor?: AnchorPosition,
): Pick<ScoreRow, 'prompt' | 'images'> {
  const list = Array.isArray(images) ? images : [images];
  const processed = list.map((im) => m.processor.process(im));
  const messages = list.length === 1 ? singleImageMessages(question) : multiImageMessages(question, anchor ?? 'first');
  const prompt = promptIds(
    m.tokenizer,
    messages,
    processed.map((p) => p.text),
    m.placeholder,
  ).ids;
  return { prompt, images: processed.flatMap((p) => p.tiles) };
}

/** a question and its answer (EOS last), every answer token scored; one image, or two with the anchor */
export function answerRow(
  m: ChatModel,
  images: PixelImage | [PixelImage, PixelImage],
  question: string,
  answer: string,
  anchor?: AnchorPosition,
): ScoreRow {
  return { ...questionPrompt(m, images, question, anchor), responses: [encodeResponse(m.tokenizer, answer).ids] };
}

/**
 * a question whose next-token log-probs of `candidates` (first tokens) are read off: each candidate is a
 * one-token response packed behind the prompt, so all are predicted from the prompt's last position. One
 * image, or two with the anchor instruction that names the one to answer about.
 */
export function choiceRow(
  m: ChatModel,
  images: PixelImage | [PixelImage, PixelImage],
  question: string,
  candidates: readonly number[],
  anchor?: AnchorPosition,
): ScoreRow {
  return { ...questionPrompt(m, images, question, anchor), responses: candidates.map((t) => [t]) };
}
