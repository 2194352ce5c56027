/**
 * Preference sets from disk for the Node trainer: an IC-VCO JSONL file (image paths relative to the file), a
 * folder with one (preference.jsonl, as `vco-lab data export` writes), or a folder in the official dataset's
 * layout (preference/train/metadata.parquet with HF Image structs {path, bytes}, beside images/). Every row
 * and every image is checked before anything trains; problems name the row (line or row number), the field
 * and the fix, and all of them are listed at once.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  type DatasetRead,
  DatasetError,
  type PreferenceRecord,
  type RowIssue,
  readPreferenceJsonl,
  readPreferenceParquet,
  usableRecords,
} from '../data/dataset.js';
import { decodeImage } from '../data/image.js';
import type { ImageSource } from '../engine/datasets.js';

export interface DatasetOnDisk {
  /** the file the rows came from */
  source: string;
  records: PreferenceRecord[];
  /** each row's images as decoders: a run keeps the files' bytes, not their pixels (see TileCache) */
  images: Array<[ImageSource, ImageSource]>;
  /** rows left out because they were bad (skip_bad_rows) */
  skipped: RowIssue[];
}

const OFFICIAL = join('preference', 'train', 'metadata.parquet');

/** which file holds the rows of `path` */
export function datasetFile(path: string): { file: string; kind: 'jsonl' | 'parquet'; root: string } {
  if (!existsSync(path))
    throw new DatasetError(`${path}: no such file or folder (the dataset: a .jsonl file or a dataset folder)`);
  if (statSync(path).isFile()) {
    if (path.endsWith('.parquet')) return { file: path, kind: 'parquet', root: dirname(path) };
    return { file: path, kind: 'jsonl', root: dirname(path) };
  }
  if (existsSync(join(path, OFFICIAL))) return { file: join(path, OFFICIAL), kind: 'parquet', root: path };
  if (existsSync(join(path, 'preference.jsonl'))) return { file: join(path, 'preference.jsonl'), kind: 'jsonl', root: path };
  throw new DatasetError(
    `${path}: a dataset folder holds ${OFFICIAL} (the official IC-VCO layout, with images/) or preference.jsonl; found neither`,
  );
}

/** read the rows, check them, and decode every image; an error lists every bad row unless `skipBad` */
export async function readDatasetFromDisk(path: string, o: { skipBad?: boolean } = {}): Promise<DatasetOnDisk> {
  const { file, kind, root } = datasetFile(path);
  let read: DatasetRead;
  if (kind === 'jsonl') read = readPreferenceJsonl(readFileSync(file, 'utf8'), file);
  else {
    const b = readFileSync(file);
    read = await readPreferenceParquet(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer, file);
  }
  // images are part of a row: one that cannot be found or decoded makes its row bad, as a bad field does
  const images = new Map<PreferenceRecord, [ImageSource, ImageSource]>();
  const problems = [...read.problems];
  for (const r of read.records) {
    try {
      const pair = r.images.map((im, k) => {
        const field = `field "images"[${k}]`;
        let bytes = im.bytes;
        let name = im.path ?? `${field} (inline bytes)`;
        if (!bytes) {
          // the official loader resolves relative paths against the working directory; the layout puts them
          // under the dataset's root: try the root first
          const candidates = [resolve(root, im.path!), resolve(im.path!)];
          const hit = candidates.find((p) => existsSync(p) && statSync(p).isFile());
          if (!hit) throw new Error(`${field} = "${im.path}": no file at ${candidates[0]}; add the image or fix the path`);
          bytes = new Uint8Array(readFileSync(hit));
          name = hit;
        }
        try {
          decodeImage(bytes, name);
        } catch (e) {
          throw new Error(`${field}: ${(e as Error).message}`, { cause: e });
        }
        const kept = bytes;
        return () => decodeImage(kept, name);
      }) as [ImageSource, ImageSource];
      images.set(r, pair);
    } catch (e) {
      problems.push({ where: r.where, message: `${r.where}: ${(e as Error).message}` });
    }
  }
  const rowNumber = (p: RowIssue) => Number(/(\d+)$/.exec(p.where)?.[1] ?? 0);
  problems.sort((a, b) => rowNumber(a) - rowNumber(b));
  const good = read.records.filter((r) => images.has(r));
  const records = usableRecords({ ...read, records: good, problems }, o.skipBad);
  return { source: file, records, images: records.map((r) => images.get(r)!), skipped: o.skipBad ? problems : [] };
}
