/**
 * The ShapesWorld yes/no benchmark (POPE/AMBER style): each question is answered by comparing the model's
 * next-token log-probs of "Yes" and "No" after the generation prompt (the first token of each answer as the
 * model's own tokenizer writes it), with no sampling. Metrics per category as POPE reports them: accuracy, F1
 * of the "yes" class, and the yes-ratio (how often the model says yes; 0.5 for a balanced, unbiased answerer).
 */
import type { Engine } from '../engine/engine.js';
import { type ChatModel, choiceRow } from '../engine/rows.js';
import type { PixelImage } from '../model/processor.js';
import { type AnchorPosition, encodeResponse } from '../model/prompts.js';

export interface YesNoItem {
  category: string;
  /** one image, or two (then `anchor` names the one the question is about) */
  image: PixelImage | [PixelImage, PixelImage];
  anchor?: AnchorPosition;
  question: string;
  answer: 'yes' | 'no';
}

export interface CategoryMetrics {
  accuracy: number;
  f1: number;
  yes_ratio: number;
  n: number;
}

export interface BenchmarkResult {
  model: string;
  categories: Record<string, CategoryMetrics>;
}

/** the first token of "Yes." and "No." as this tokenizer encodes an answer */
export function yesNoTokens(m: Pick<ChatModel, 'tokenizer'>): { yes: number; no: number } {
  const yes = encodeResponse(m.tokenizer, 'Yes.').ids[0],
    no = encodeResponse(m.tokenizer, 'No.').ids[0];
  if (yes === no) throw new Error('the tokenizer gives "Yes." and "No." the same first token; cannot score yes/no');
  return { yes, no };
}

/**
 * log p(yes) − log p(no) for each item, from one engine pass per batch of questions (the two candidates
 * packed behind each prompt); `which` = 'policy' scores with the engine's adapter, 'reference' without
 */
export async function yesNoMargins(
  engine: Engine,
  m: ChatModel,
  items: readonly YesNoItem[],
  o: {
    batch?: number;
    which?: 'policy' | 'reference';
    onProgress?: (done: number, total: number) => void;
    signal?: AbortSignal;
  } = {},
): Promise<number[]> {
  const { yes, no } = yesNoTokens(m);
  const rows = items.map((it) => choiceRow(m, it.image, it.question, [yes, no], it.anchor));
  const lps = await engine.scoreRows(rows, o.which ?? 'policy', {
    batch: o.batch ?? 32,
    onProgress: o.onProgress,
    signal: o.signal,
  });
  const margins = lps.map(([lpYes, lpNo]) => lpYes[0] - lpNo[0]);
  // a NaN margin would count as "no" and make an ordinary-looking accuracy: stop instead
  const bad = margins.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) {
    const it = items[bad];
    throw new Error(
      `question ${bad} (${it.category}: "${it.question}"): log p("Yes") - log p("No") is ${margins[bad]} ` +
        `(${lps[bad][0][0]} - ${lps[bad][1][0]}): the model${o.which === 'reference' ? '' : ' or its adapter'} computes ` +
        'non-finite values (an overflow in the forward pass, or weights damaged after loading); no accuracy is reported',
    );
  }
  return margins;
}

export function categoryMetrics(answers: readonly ('yes' | 'no')[], saidYes: readonly boolean[]): CategoryMetrics {
  let tp = 0,
    fp = 0,
    fn = 0,
    correct = 0,
    yesCount = 0;
  answers.forEach((a, i) => {
    const y = saidYes[i];
    if (y) yesCount++;
    if ((a === 'yes') === y) correct++;
    if (y && a === 'yes') tp++;
    else if (y) fp++;
    else if (a === 'yes') fn++;
  });
  const n = answers.length;
  return { accuracy: n ? correct / n : NaN, f1: tp ? (2 * tp) / (2 * tp + fp + fn) : 0, yes_ratio: n ? yesCount / n : NaN, n };
}

/** metrics per category (in the order categories first appear) from items and their yes−no margins */
export function benchmarkMetrics(model: string, items: readonly YesNoItem[], margins: readonly number[]): BenchmarkResult {
  const by = new Map<string, { a: ('yes' | 'no')[]; y: boolean[] }>();
  items.forEach((it, i) => {
    let c = by.get(it.category);
    if (!c) by.set(it.category, (c = { a: [], y: [] }));
    c.a.push(it.answer);
    c.y.push(margins[i] > 0);
  });
  return { model, categories: Object.fromEntries([...by].map(([k, v]) => [k, categoryMetrics(v.a, v.y)])) };
}

export function formatBenchmark(r: BenchmarkResult): string {
  const lines = [`model: ${r.model}`, 'category     n     accuracy  F1      yes-ratio'];
  for (const [k, m] of Object.entries(r.categories)) {
    lines.push(
      `${k.padEnd(12)} ${String(m.n).padEnd(5)} ${m.accuracy.toFixed(3).padEnd(9)} ${m.f1.toFixed(3).padEnd(7)} ${m.yes_ratio.toFixed(3)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
