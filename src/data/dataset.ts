/**
 * Preference datasets from files, as the official IC-VCO code reads them: JSONL rows with image paths (relative
 * to the file's folder), or the official dataset's layout (`preference/train/metadata.parquet`, whose `images`
 * are Hugging Face `Image` structs {path, bytes}, beside `images/`). Every row is checked before anything
 * trains; problems are collected with the row's place (file and line or row number), the field and the fix,
 * so a user sees them all at once and chooses to fix the file or to skip those rows.
 *
 * Reading image bytes and decoding them is the caller's (a folder in Node, dropped files in the page).
 */
import { parquetReadObjects } from 'hyparquet';
import { type ImageField, type PreferenceRow, checkRow, collectRows } from './formats.js';
import type { Span } from './edits.js';

/** where an image's bytes come from: inline bytes (a parquet Image struct), or a path relative to `base` */
export interface ImageRef {
  bytes?: Uint8Array;
  path?: string;
}

export interface PreferenceRecord {
  /** "file line 3" or "file row 3" (1-based), for messages */
  where: string;
  id: string;
  prompt: string;
  chosen: string;
  rejected: string;
  chosenSpans: Span[];
  rejectedSpans: Span[];
  /** the images of m and m′ */
  images: [ImageRef, ImageRef];
}

export interface RowIssue {
  where: string;
  message: string;
}

export interface DatasetRead {
  /** where the rows came from */
  source: string;
  records: PreferenceRecord[];
  problems: RowIssue[];
  /** rows seen (valid and not) */
  rows: number;
}

export class DatasetError extends Error {
  constructor(
    message: string,
    readonly problems: RowIssue[] = [],
  ) {
    super(message);
    this.name = 'DatasetError';
  }
}

const ref = (f: ImageField): ImageRef =>
  typeof f === 'string' ? { path: f } : { bytes: f.bytes ?? undefined, path: f.path ? f.path : undefined };

function record(row: PreferenceRow, where: string, k: number): PreferenceRecord {
  const spans = (s: unknown): Span[] =>
    ((s as unknown[] | null) ?? []).map((p) => [Number((p as number[])[0]), Number((p as number[])[1])] as Span);
  const images = row.images as unknown as ImageField[];
  return {
    where,
    id: typeof row.id === 'string' && row.id ? row.id : `row${k + 1}`,
    prompt: row.prompt,
    chosen: row.chosen,
    rejected: row.rejected,
    chosenSpans: spans(row.chosen_response_spans),
    rejectedSpans: spans(row.rejected_response_spans),
    images: [ref(images[0]), ref(images[1])],
  };
}

/** IC-VCO preference JSONL (one object per line; images relative to the file's folder) */
export function readPreferenceJsonl(text: string, file: string): DatasetRead {
  const { rows, problems } = collectRows(text, file, 'preference');
  return {
    source: file,
    records: rows.map(({ line, row }, k) => record(row, `${file} line ${line}`, k)),
    problems: problems.map((p) => ({ where: `${file} line ${p.line}`, message: p.message })),
    rows: rows.length + problems.length,
  };
}

/** the official layout's metadata.parquet (images as HF Image structs; paths relative to the dataset root) */
export async function readPreferenceParquet(bytes: ArrayBuffer, file: string): Promise<DatasetRead> {
  let rows: Record<string, unknown>[];
  try {
    // utf8: false keeps an Image struct's `bytes` binary; annotated string columns stay strings
    rows = await parquetReadObjects({ file: bytes, utf8: false });
  } catch (e) {
    throw new DatasetError(
      `${file}: not a readable parquet file (${(e as Error).message}); re-export it with pyarrow or datasets`,
    );
  }
  const records: PreferenceRecord[] = [],
    problems: RowIssue[] = [];
  rows.forEach((row, i) => {
    const where = `${file} row ${i + 1}`;
    const msg = checkRow(row, 'preference');
    if (msg) problems.push({ where, message: `${where}: ${msg}` });
    else records.push(record(row as PreferenceRow, where, i));
  });
  return { source: file, records, problems, rows: rows.length };
}

/**
 * the records to train on: all of them, or (skipBad) the valid ones; an error listing the problems (the first
 * 20) when there are some and they are not to be skipped, or when nothing is left
 */
export function usableRecords(read: DatasetRead, skipBad = false): PreferenceRecord[] {
  if (read.rows === 0) throw new DatasetError(`${read.source} holds no rows: a preference set needs at least one`);
  if (read.problems.length && !skipBad) {
    const shown = read.problems.slice(0, 20).map((p) => p.message);
    const more = read.problems.length > 20 ? `\n... and ${read.problems.length - 20} more` : '';
    throw new DatasetError(
      `${read.problems.length} of ${read.rows} rows of ${read.source} are not valid (fix them, or skip the bad rows):\n${shown.join('\n')}${more}`,
      read.problems,
    );
  }
  if (!read.records.length) throw new DatasetError(`${read.source}: none of its ${read.rows} rows is valid`, read.problems);
  return read.records;
}

/** a row for writePreferenceParquet: the JSONL row's fields, with each image as an HF `Image` struct */
export interface ParquetPreferenceRow {
  prompt: string;
  chosen: string;
  rejected: string;
  images: [{ path: string | null; bytes: Uint8Array | null }, { path: string | null; bytes: Uint8Array | null }];
  chosen_response_spans: Span[];
  rejected_response_spans: Span[];
  id: string;
}

/** Hugging Face `datasets` features of the official layout: with these, load_dataset gives `Image` columns */
const HF_FEATURES = {
  info: {
    features: {
      prompt: { dtype: 'string', _type: 'Value' },
      chosen: { dtype: 'string', _type: 'Value' },
      rejected: { dtype: 'string', _type: 'Value' },
      images: { feature: { decode: false, _type: 'Image' }, _type: 'List' },
      chosen_response_spans: { feature: { feature: { dtype: 'int64', _type: 'Value' }, _type: 'List' }, _type: 'List' },
      rejected_response_spans: { feature: { feature: { dtype: 'int64', _type: 'Value' }, _type: 'List' }, _type: 'List' },
      id: { dtype: 'string', _type: 'Value' },
    },
  },
};

/**
 * `preference/train/metadata.parquet` as `datasets` writes it (the same parquet schema: `images` a list of
 * {bytes, path} structs, spans lists of int64 pairs; the `huggingface` features metadata), so that
 * `load_dataset(dir, "preference")` and the official trainer read it.
 */
export async function writePreferenceParquet(rows: ParquetPreferenceRow[]): Promise<Uint8Array> {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const list = (name: string, children: number) => [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    ...(children ? [{ name: 'element', repetition_type: 'OPTIONAL', num_children: children }] : []),
  ];
  const spans = (name: string) => [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', type: 'INT64' },
  ];
  const str = (name: string) => ({ name, repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY', converted_type: 'UTF8' });
  const schema = [
    { name: 'schema', repetition_type: 'REQUIRED', num_children: 7 },
    str('prompt'),
    str('chosen'),
    str('rejected'),
    ...list('images', 2),
    { name: 'bytes', repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY' },
    str('path'),
    ...spans('chosen_response_spans'),
    ...spans('rejected_response_spans'),
    str('id'),
  ];
  const col = <K extends keyof ParquetPreferenceRow>(k: K) => rows.map((r) => r[k]);
  const big = (ss: Span[]) => ss.map(([a, b]) => [BigInt(a), BigInt(b)]);
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'prompt', data: col('prompt') },
      { name: 'chosen', data: col('chosen') },
      { name: 'rejected', data: col('rejected') },
      { name: 'images', data: rows.map((r) => r.images.map((im) => ({ bytes: im.bytes, path: im.path }))) },
      { name: 'chosen_response_spans', data: rows.map((r) => big(r.chosen_response_spans)) },
      { name: 'rejected_response_spans', data: rows.map((r) => big(r.rejected_response_spans)) },
      { name: 'id', data: col('id') },
    ],
    schema: schema as never,
    kvMetadata: [{ key: 'huggingface', value: JSON.stringify(HF_FEATURES) }],
    createdBy: 'vco-lab',
  });
  return new Uint8Array(buf);
}
