/**
 * Training data for a run in the page: a ShapesWorld set from its options, or a dropped folder in the
 * official layouts (IC-VCO JSONL with image paths beside it; `preference/train/metadata.parquet` with HF
 * `Image` structs and `images/`). Every row is read, its images found and decoded before a run can start;
 * the problems come back with the row's place, field and fix, and nothing trains on half-valid data unless
 * the user skips the bad rows. A preview (texts and small thumbnails) goes back to the page.
 */
import {
  type DatasetRead,
  type PreferenceRecord,
  type RowIssue,
  DatasetError,
  readPreferenceJsonl,
  readPreferenceParquet,
} from '../data/dataset.js';
import { render } from '../data/raster.js';
import { type SetOptions, shapesworldSet } from '../data/sets.js';
import type { PixelImage } from '../model/processor.js';
import { type RunData, type StoredRecord, decodeImageBytes } from './training.js';

export type DataInput = { kind: 'shapesworld'; options: SetOptions } | { kind: 'folder'; files: File[]; name: string };

export interface PreviewRow {
  kind: string;
  question: string;
  chosen: string;
  rejected: string;
  /** small RGB thumbnails of m and m′ */
  m: { width: number; height: number; data: Uint8Array };
  mPrime: { width: number; height: number; data: Uint8Array };
}

export interface DataPreview {
  source: string;
  samples: number;
  rows: number;
  problems: RowIssue[];
  /** the first rows, for a look */
  preview: PreviewRow[];
}

const PREVIEW = 24;

/** nearest-neighbour RGB thumbnail, at most `side` pixels a side */
function thumb(img: PixelImage, side = 64): PreviewRow['m'] {
  const ch = img.channels ?? img.data.length / (img.width * img.height);
  const s = Math.min(1, side / Math.max(img.width, img.height));
  const w = Math.max(1, Math.round(img.width * s)),
    h = Math.max(1, Math.round(img.height * s));
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sx = Math.min(img.width - 1, Math.floor(x / s)),
        sy = Math.min(img.height - 1, Math.floor(y / s));
      for (let c = 0; c < 3; c++) out[3 * (y * w + x) + c] = img.data[ch * (sy * img.width + sx) + c];
    }
  }
  return { width: w, height: h, data: out };
}

const relPath = (f: File) => (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;

/** a path inside the dropped folder: "a/./b/../c.png" against the folder's own name prefix */
function normalise(p: string): string {
  const out: string[] = [];
  for (const part of p.replace(/\\/g, '/').split('/')) {
    if (!part || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

export async function prepareData(
  input: DataInput,
  o: { skipBad?: boolean; signal?: AbortSignal } = {},
): Promise<{ data: RunData; preview: DataPreview }> {
  if (input.kind === 'shapesworld') {
    const set = shapesworldSet(input.options);
    const preview = set.slice(0, PREVIEW).map((s) => ({
      kind: s.kind,
      question: s.sample.prompt,
      chosen: s.sample.chosen,
      rejected: s.sample.rejected,
      m: thumb(render(s.sample.m)),
      mPrime: thumb(render(s.mPrime)),
    }));
    return {
      data: { kind: 'shapesworld', options: input.options },
      preview: {
        source: `ShapesWorld (seed ${input.options.seed})`,
        samples: set.length,
        rows: set.length,
        problems: [],
        preview,
      },
    };
  }
  // files by their path inside the dropped folder (its own name stripped)
  const byPath = new Map<string, File>();
  for (const f of input.files) {
    const parts = normalise(relPath(f)).split('/');
    byPath.set(parts.length > 1 ? parts.slice(1).join('/') : parts[0], f);
  }
  const parquet = [...byPath.keys()].find((p) => p.endsWith('preference/train/metadata.parquet'));
  const jsonl = [...byPath.keys()]
    .filter((p) => p.endsWith('.jsonl'))
    .sort((a, b) => Number(!/preference/.test(a)) - Number(!/preference/.test(b)) || a.localeCompare(b))[0];
  let read: DatasetRead;
  let base: string;
  if (parquet) {
    read = await readPreferenceParquet(await byPath.get(parquet)!.arrayBuffer(), `${input.name}/${parquet}`);
    // image paths of the official layout are relative to the dataset's root (the folder holding preference/)
    base = parquet.slice(0, -'preference/train/metadata.parquet'.length);
  } else if (jsonl) {
    read = readPreferenceJsonl(await byPath.get(jsonl)!.text(), `${input.name}/${jsonl}`);
    base = jsonl.includes('/') ? jsonl.slice(0, jsonl.lastIndexOf('/') + 1) : '';
  } else {
    throw new DatasetError(
      `${input.name}: no preference data found: drop a folder with an IC-VCO JSONL file (and its images) or the official layout (preference/train/metadata.parquet and images/)`,
    );
  }
  if (read.rows === 0) throw new DatasetError(`${read.source} holds no rows: a preference set needs at least one`);
  const problems = [...read.problems];
  const records: StoredRecord[] = [];
  const decoded: Array<[PixelImage, PixelImage]> = [];
  for (const r of read.records as PreferenceRecord[]) {
    if (o.signal?.aborted) throw o.signal.reason;
    const imgs: StoredRecord['images'] = [] as unknown as StoredRecord['images'];
    const pix: PixelImage[] = [];
    let bad: string | null = null;
    for (const [k, ref] of r.images.entries()) {
      let bytes = ref.bytes;
      const name = ref.path ?? `${r.id} image ${k + 1}`;
      if (!bytes) {
        const f = byPath.get(normalise(base + ref.path!)) ?? byPath.get(normalise(ref.path!));
        if (!f) {
          bad = `${r.where}: field "images"[${k}] = "${ref.path}": no such file in ${input.name}; add the image or fix the path`;
          break;
        }
        bytes = new Uint8Array(await f.arrayBuffer());
      }
      try {
        pix.push(await decodeImageBytes(bytes, name));
      } catch (e) {
        bad = `${r.where}: field "images"[${k}]: ${(e as Error).message}`;
        break;
      }
      imgs.push({ name, bytes });
    }
    if (bad) problems.push({ where: r.where, message: bad });
    else {
      records.push({ ...r, images: imgs });
      decoded.push(pix as [PixelImage, PixelImage]);
    }
  }
  if (problems.length && !o.skipBad) {
    const shown = problems.slice(0, 20).map((p) => p.message);
    throw new DatasetError(
      `${problems.length} of ${read.rows} rows of ${read.source} are not valid (fix them, or skip the bad rows):\n${shown.join('\n')}` +
        (problems.length > 20 ? `\n... and ${problems.length - 20} more` : ''),
      problems,
    );
  }
  if (!records.length) throw new DatasetError(`${read.source}: none of its ${read.rows} rows is valid`, problems);
  const preview = records.slice(0, PREVIEW).map((r, i) => ({
    kind: '',
    question: r.prompt,
    chosen: r.chosen,
    rejected: r.rejected,
    m: thumb(decoded[i][0]),
    mPrime: thumb(decoded[i][1]),
  }));
  return {
    data: { kind: 'records', source: read.source, records },
    preview: { source: read.source, samples: records.length, rows: read.rows, problems, preview },
  };
}
