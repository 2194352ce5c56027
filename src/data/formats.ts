/**
 * The official IC-VCO data formats (preference and SFT JSONL with image paths), so sets made here train with
 * the paper's code and sets made there load here. Parsing is strict and every error names the file, the line,
 * the field and the fix, because a silently skipped or misread span would corrupt a training run unnoticed.
 */
import type { PreferenceSample, Span } from './edits.js';
import type { QA } from './language.js';

export class DataFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataFormatError';
  }
}

export interface PreferenceRow {
  prompt: string;
  chosen: string;
  rejected: string;
  /** [image of m, image of m'], relative to the JSONL file's folder */
  images: string[];
  chosen_response_spans: Span[];
  rejected_response_spans: Span[];
  id?: string;
  edit?: { scenario: string; type: string };
  [extra: string]: unknown;
}

export interface SftRow {
  prompt: string;
  completion: string;
  images: string[];
  [extra: string]: unknown;
}

export const preferenceImagePaths = (id: string): [string, string] => [`images/${id}_m.png`, `images/${id}_mprime.png`];
export const sftImagePath = (id: string): string => `images/${id}.png`;

export function preferenceRow(
  sample: PreferenceSample,
  imagePaths: [string, string] = preferenceImagePaths(sample.id),
): PreferenceRow {
  return {
    prompt: sample.prompt,
    chosen: sample.chosen,
    rejected: sample.rejected,
    images: [...imagePaths],
    chosen_response_spans: sample.chosenSpans.map(([s, e]) => [s, e]),
    rejected_response_spans: sample.rejectedSpans.map(([s, e]) => [s, e]),
    id: sample.id,
    edit: { scenario: sample.edit.scenario, type: sample.edit.type },
  };
}

export function sftRow(qa: QA, imagePath: string): SftRow {
  return { prompt: qa.question, completion: qa.answer, images: [imagePath] };
}

const show = (v: unknown): string =>
  Array.isArray(v) ? `[${v.map((x) => JSON.stringify(x)).join(', ')}]` : (JSON.stringify(v) ?? String(v));
const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

export type RowKind = 'preference' | 'sft';

/** an image in a row: a path (JSONL), or an HF `Image` struct {path, bytes} (the official parquet layout) */
export type ImageField = string | { path?: string | null; bytes?: Uint8Array | null };

/**
 * one row checked against the official format, or the problem with it (the field and the fix; the caller
 * prefixes where the row is). Preference rows need exactly two images (m, m'), valid character spans into
 * their answers; SFT rows at least one image.
 */
export function checkRow(row: unknown, kind: RowKind): string | null {
  try {
    checkRowOrThrow(row, kind);
    return null;
  } catch (e) {
    if (e instanceof RowProblem) return e.message;
    throw e;
  }
}

class RowProblem extends Error {}

function checkRowOrThrow(row: unknown, kind: RowKind): void {
  const fail = (msg: string): never => {
    throw new RowProblem(msg);
  };
  if (typeof row !== 'object' || row === null || Array.isArray(row))
    fail(`expected a JSON object, got ${typeName(row)}; write one object per line`);
  const r = row as Record<string, unknown>;
  const str = (field: string) => {
    if (!(field in r) || r[field] === null || r[field] === undefined) fail(`field "${field}" is missing; add it or drop the row`);
    if (typeof r[field] !== 'string')
      fail(`field "${field}" must be a string, got ${typeName(r[field])}; fix it or drop the row`);
  };
  const need = kind === 'preference' ? ['prompt', 'chosen', 'rejected'] : ['prompt', 'completion'];
  need.forEach(str);
  if (!('images' in r) || r.images === null) fail('field "images" is missing; add the image paths or drop the row');
  const imgs = r.images;
  if (!Array.isArray(imgs)) fail(`field "images" must be an array of paths, got ${typeName(imgs)}; fix it or drop the row`);
  (imgs as unknown[]).forEach((p, k) => {
    const struct = p && typeof p === 'object' && !Array.isArray(p) && !ArrayBuffer.isView(p);
    const okStruct =
      struct &&
      ((typeof (p as { path?: unknown }).path === 'string' && (p as { path: string }).path !== '') ||
        ArrayBuffer.isView((p as { bytes?: unknown }).bytes));
    if (!(typeof p === 'string' && p) && !okStruct)
      fail(
        struct
          ? `field "images"[${k}] is an Image struct with neither a path nor bytes; fix it or drop the row`
          : `field "images"[${k}] = ${show(p)} is not a path; fix it or drop the row`,
      );
  });
  const n = (imgs as unknown[]).length;
  if (kind === 'preference' && n !== 2)
    fail(`field "images" has ${n} entries; a preference row needs exactly 2 (the images of m and m'); fix it or drop the row`);
  if (kind === 'sft' && n < 1) fail('field "images" is empty; an SFT row needs at least 1 image; add one or drop the row');
  if (kind === 'preference') {
    for (const [field, of] of [
      ['chosen_response_spans', 'chosen'],
      ['rejected_response_spans', 'rejected'],
    ] as const) {
      if (!(field in r) || r[field] === undefined)
        fail(`field "${field}" is missing; add the spans ([] for none) or drop the row`);
      // the official loader turns None into [] (train_vco.py:75-78)
      const spans = r[field] === null ? [] : r[field],
        len = (r[of] as string).length;
      if (!Array.isArray(spans))
        fail(`field "${field}" must be an array of [start, end] pairs, got ${typeName(spans)}; fix it or drop the row`);
      (spans as unknown[]).forEach((sp, k) => {
        const pair = Array.isArray(sp) ? sp.map(Number) : sp;
        const ok =
          Array.isArray(pair) &&
          pair.length === 2 &&
          pair.every(Number.isInteger) &&
          0 <= pair[0] &&
          pair[0] < pair[1] &&
          pair[1] <= len;
        if (!ok)
          fail(
            `field "${field}"[${k}] = ${show(sp)} is not a span 0 <= start < end <= ${len} of "${of}"; fix the span or drop the row`,
          );
      });
    }
    if ('id' in r && r.id !== null && typeof r.id !== 'string')
      fail(`field "id" must be a string, got ${typeName(r.id)}; fix it or drop the field`);
    if ('edit' in r && r.edit !== null && (typeof r.edit !== 'object' || Array.isArray(r.edit)))
      fail(`field "edit" must be an object, got ${typeName(r.edit)}; fix it or drop the field`);
  }
}

/** a JSONL file's rows with their 1-based line numbers, and the lines that are not valid rows */
export function collectRows<K extends RowKind>(
  text: string,
  file: string,
  kind: K,
): {
  rows: { line: number; row: K extends 'preference' ? PreferenceRow : SftRow }[];
  problems: { line: number; message: string }[];
} {
  const rows: { line: number; row: never }[] = [];
  const problems: { line: number; message: string }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1,
      src = raw.replace(/\r$/, '');
    if (!src.trim()) return;
    let row: unknown;
    try {
      row = JSON.parse(src);
    } catch (e) {
      problems.push({ line, message: `${file} line ${line}: not valid JSON (${(e as Error).message}); fix the line or drop it` });
      return;
    }
    const msg = checkRow(row, kind);
    if (msg) problems.push({ line, message: `${file} line ${line}: ${msg}` });
    else rows.push({ line, row: row as never });
  });
  return { rows, problems };
}

/** rows with their 1-based line numbers; empty lines are skipped; the first bad line, or no row at all, is an error */
export function parseRows<K extends RowKind>(
  text: string,
  file: string,
  kind: K,
): { line: number; row: K extends 'preference' ? PreferenceRow : SftRow }[] {
  const { rows, problems } = collectRows(text, file, kind);
  if (problems.length) throw new DataFormatError(problems[0].message);
  if (!rows.length)
    throw new DataFormatError(
      `${file} holds no rows (${text.length ? 'only blank lines' : 'it is empty'}); write one JSON object per line`,
    );
  return rows;
}

export function parsePreferenceJsonl(text: string, file: string): PreferenceRow[] {
  return parseRows(text, file, 'preference').map((x) => x.row);
}

export function parseSftJsonl(text: string, file: string): SftRow[] {
  return parseRows(text, file, 'sft').map((x) => x.row);
}

export const toJsonl = (rows: object[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
