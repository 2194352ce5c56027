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

/** rows with their 1-based line numbers; empty lines are skipped */
export function parseRows<K extends RowKind>(
  text: string,
  file: string,
  kind: K,
): { line: number; row: K extends 'preference' ? PreferenceRow : SftRow }[] {
  const out: { line: number; row: never }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1,
      src = raw.replace(/\r$/, '');
    if (!src.trim()) return;
    const fail = (msg: string): never => {
      throw new DataFormatError(`${file} line ${line}: ${msg}`);
    };
    let row: unknown;
    try {
      row = JSON.parse(src);
    } catch (e) {
      fail(`not valid JSON (${(e as Error).message}); fix the line or drop it`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row))
      fail(`expected a JSON object, got ${typeName(row)}; write one object per line`);
    const r = row as Record<string, unknown>;
    const str = (field: string) => {
      if (!(field in r)) fail(`field "${field}" is missing; add it or drop the row`);
      if (typeof r[field] !== 'string')
        fail(`field "${field}" must be a string, got ${typeName(r[field])}; fix it or drop the row`);
    };
    const need = kind === 'preference' ? ['prompt', 'chosen', 'rejected'] : ['prompt', 'completion'];
    need.forEach(str);
    if (!('images' in r)) fail('field "images" is missing; add the image paths or drop the row');
    const imgs = r.images;
    if (!Array.isArray(imgs)) fail(`field "images" must be an array of paths, got ${typeName(imgs)}; fix it or drop the row`);
    (imgs as unknown[]).forEach((p, k) => {
      if (typeof p !== 'string' || !p) fail(`field "images"[${k}] = ${show(p)} is not a path; fix it or drop the row`);
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
        if (!(field in r)) fail(`field "${field}" is missing; add the spans ([] for none) or drop the row`);
        const spans = r[field],
          len = (r[of] as string).length;
        if (!Array.isArray(spans))
          fail(`field "${field}" must be an array of [start, end] pairs, got ${typeName(spans)}; fix it or drop the row`);
        (spans as unknown[]).forEach((sp, k) => {
          const ok =
            Array.isArray(sp) && sp.length === 2 && sp.every(Number.isInteger) && 0 <= sp[0] && sp[0] < sp[1] && sp[1] <= len;
          if (!ok)
            fail(
              `field "${field}"[${k}] = ${show(sp)} is not a span 0 <= start < end <= ${len} of "${of}"; fix the span or drop the row`,
            );
        });
      }
      if ('id' in r && typeof r.id !== 'string')
        fail(`field "id" must be a string, got ${typeName(r.id)}; fix it or drop the field`);
      if ('edit' in r && (typeof r.edit !== 'object' || r.edit === null || Array.isArray(r.edit)))
        fail(`field "edit" must be an object, got ${typeName(r.edit)}; fix it or drop the field`);
    }
    out.push({ line, row: r as never });
  });
  return out;
}

export function parsePreferenceJsonl(text: string, file: string): PreferenceRow[] {
  return parseRows(text, file, 'preference').map((x) => x.row);
}

export function parseSftJsonl(text: string, file: string): SftRow[] {
  return parseRows(text, file, 'sft').map((x) => x.row);
}

export const toJsonl = (rows: object[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
