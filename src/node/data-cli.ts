/**
 * `vco-lab data`: ShapesWorld sets on disk in the official IC-VCO format (JSONL + PNG), a checker for such
 * files (ours or anyone's), and the edited-vs-synthetic image similarity report. Exports are written to a
 * temporary sibling folder and renamed into place, so a failure never leaves a half-written set.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from './options.js';
import { writePreferenceParquet } from '../data/dataset.js';
import { makePreferenceSample, syntheticNegative } from '../data/edits.js';
import {
  type PreferenceRow,
  type RowKind,
  parseRows,
  preferenceImagePaths,
  preferenceRow,
  sftImagePath,
  sftRow,
  toJsonl,
} from '../data/formats.js';
import { sftExample } from '../data/language.js';
import { decodePng, encodePng } from '../data/png.js';
import { render } from '../data/raster.js';
import { similarityReport } from '../data/similarity.js';
import { deriveSeed, rng } from '../data/world.js';

export const DATA_USAGE = `usage: vco-lab data <command> [options]

commands:
  export --out DIR [--kind preference|sft] [--n N] [--seed S] [--negatives edited|synthetic]
         [--star-yellow P] [--layout jsonl|official]
      Write N ShapesWorld samples (100) to DIR/preference.jsonl (or DIR/sft.jsonl) and
      DIR/images/*.png in the official IC-VCO format. preference: prompt "Describe the
      image.", chosen y, rejected y'_new, images [m, m'], token-level response spans;
      --negatives synthetic replaces the edited m' by a scene re-generated from y'_new
      (new layout, background and style). sft: one question and answer per image.
      --star-yellow: P(star is yellow) in the scenes (0.95). --layout official writes the
      preference rows as the released IC-VCO dataset lays them out instead:
      DIR/preference/train/metadata.parquet (HF datasets' schema, images as Image structs with
      paths into DIR/images/), which load_dataset(DIR, "preference") and vco-lab train read.
      DIR is replaced only if it holds nothing but a previous export.
  check FILE.jsonl
      Validate a preference or SFT JSONL file: fields, types, spans, and that every image
      exists (relative to the file's folder) and decodes as an 8-bit RGB/RGBA PNG.
      Prints "N rows OK" or the first error; exits 1 on error.
  similarity [--n N] [--seed S] [--json]
      Mean and sd SSIM between m and its edited m', and between m and a synthetic m', over
      N samples (64).
  help
      Show this text.
`;

const EXPORT_NAMES = new Set(['preference.jsonl', 'sft.jsonl', 'images', 'preference']);

function intOpt(v: string | undefined, name: string, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  const n = /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

async function exportSet(args: string[], out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      kind: { type: 'string' },
      n: { type: 'string' },
      seed: { type: 'string' },
      negatives: { type: 'string' },
      'star-yellow': { type: 'string' },
      layout: { type: 'string' },
    },
  });
  if (!values.out) throw new Error('export needs --out DIR');
  const layout = values.layout ?? 'jsonl';
  if (layout !== 'jsonl' && layout !== 'official') throw new UsageError(`--layout takes jsonl or official, got "${layout}"`);
  if (layout === 'official' && values.kind === 'sft') throw new UsageError('--layout official applies to --kind preference');
  const kind = (values.kind ?? 'preference') as RowKind;
  if (kind !== 'preference' && kind !== 'sft') throw new Error(`--kind must be preference or sft, got "${values.kind}"`);
  const negatives = values.negatives ?? 'edited';
  if (negatives !== 'edited' && negatives !== 'synthetic')
    throw new Error(`--negatives must be edited or synthetic, got "${negatives}"`);
  if (kind === 'sft' && values.negatives) throw new Error('--negatives applies to --kind preference only');
  const n = intOpt(values.n, 'n', 100, 1),
    seed = intOpt(values.seed, 'seed', 1);
  let starYellow: number | undefined;
  if (values['star-yellow'] !== undefined) {
    starYellow = Number(values['star-yellow']);
    if (!(starYellow >= 0 && starYellow <= 1))
      throw new Error(`--star-yellow must be a probability in [0, 1], got "${values['star-yellow']}"`);
  }
  const dir = resolve(values.out);
  if (existsSync(dir)) {
    const foreign = readdirSync(dir).filter((f) => !EXPORT_NAMES.has(f));
    if (foreign.length)
      throw new Error(
        `${dir} exists and holds other files (${foreign.slice(0, 3).join(', ')}); choose another --out or empty it`,
      );
  }
  const parent = dirname(dir),
    stamp = `${process.pid}-${Date.now()}`,
    tmp = join(parent, `.${basename(dir)}.tmp-${stamp}`);
  mkdirSync(join(tmp, 'images'), { recursive: true });
  try {
    const rows: object[] = [];
    const png = (rel: string, img: ReturnType<typeof render>) => writeFileSync(join(tmp, rel), encodePng(img));
    if (kind === 'preference') {
      for (let i = 0; i < n; i++) {
        const s = makePreferenceSample(deriveSeed(seed, i), { starYellow });
        const mPrime = negatives === 'edited' ? s.mPrime : syntheticNegative(s, rng(deriveSeed(seed ^ 0x5eed, i)));
        const paths = preferenceImagePaths(s.id);
        png(paths[0], render(s.m));
        png(paths[1], render(mPrime));
        rows.push({ ...preferenceRow(s, paths), negatives });
      }
    } else {
      const rand = rng(seed);
      for (let i = 0; i < n; i++) {
        const { scene, qa } = sftExample(rand, { starYellow });
        const path = sftImagePath(`sft${seed}-${i}`);
        png(path, render(scene));
        rows.push({ ...sftRow(qa, path), kind: qa.kind });
      }
    }
    if (layout === 'official') {
      mkdirSync(join(tmp, 'preference', 'train'), { recursive: true });
      const parquet = await writePreferenceParquet(
        (rows as PreferenceRow[]).map((r) => ({
          prompt: r.prompt,
          chosen: r.chosen,
          rejected: r.rejected,
          images: [
            { path: r.images[0], bytes: null },
            { path: r.images[1], bytes: null },
          ],
          chosen_response_spans: r.chosen_response_spans as [number, number][],
          rejected_response_spans: r.rejected_response_spans as [number, number][],
          id: r.id ?? '',
        })),
      );
      writeFileSync(join(tmp, 'preference', 'train', 'metadata.parquet'), parquet);
    } else writeFileSync(join(tmp, `${kind}.jsonl`), toJsonl(rows));
    // the old export moves aside first, so at every moment DIR is either the old set or the new one
    const old = existsSync(dir) ? join(parent, `.${basename(dir)}.old-${stamp}`) : null;
    if (old) renameSync(dir, old);
    renameSync(tmp, dir);
    if (old) rmSync(old, { recursive: true, force: true });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  out(
    `wrote ${n} ${kind} rows${kind === 'preference' ? ` (${negatives} negatives)` : ''} to ` +
      `${join(dir, layout === 'official' ? 'preference/train/metadata.parquet' : `${kind}.jsonl`)} and ${join(dir, 'images')}\n`,
  );
  return 0;
}

/** throws the first problem of FILE (format, missing or unreadable images); returns the row count */
export function checkFile(file: string): number {
  const text = readFileSync(file, 'utf8');
  const first = text.split('\n').find((l) => l.trim());
  let kind: RowKind = 'preference';
  try {
    if (first && !('chosen' in JSON.parse(first)) && 'completion' in JSON.parse(first)) kind = 'sft';
  } catch {
    /* the parser below reports the bad line */
  }
  const rows = parseRows(text, file, kind),
    base = dirname(resolve(file));
  for (const { line, row } of rows) {
    row.images.forEach((rel, k) => {
      const p = resolve(base, rel);
      if (!existsSync(p))
        throw new Error(`${file} line ${line}: field "images"[${k}] = "${rel}": no file at ${p}; add the image or fix the path`);
      try {
        decodePng(readFileSync(p), p);
      } catch (e) {
        throw new Error(`${file} line ${line}: field "images"[${k}]: ${(e as Error).message}`, { cause: e });
      }
    });
  }
  return rows.length;
}

export async function dataCommand(args: string[], out: (s: string) => void, err: (s: string) => void = out): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'export':
        return await exportSet(rest, out);
      case 'check': {
        const { positionals } = parseArgs({ args: rest, strict: true, allowPositionals: true, options: {} });
        if (positionals.length !== 1) throw new Error('check needs exactly one FILE.jsonl');
        out(`${checkFile(positionals[0])} rows OK\n`);
        return 0;
      }
      case 'similarity': {
        const { values } = parseArgs({
          args: rest,
          strict: true,
          options: { n: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' } },
        });
        const n = intOpt(values.n, 'n', 64, 1),
          seed = intOpt(values.seed, 'seed', 1);
        const r = similarityReport(n, seed);
        if (values.json) out(JSON.stringify(r) + '\n');
        else {
          const f = (x: { mean: number; sd: number }) => `${x.mean.toFixed(4)} ± ${x.sd.toFixed(4)}`;
          out(
            `SSIM(m, m') over ${n} samples (seed ${seed})\n  edited m':    ${f(r.edited)}\n  synthetic m': ${f(r.synthetic)}\n`,
          );
        }
        return 0;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(DATA_USAGE);
        return 0;
      default:
        err(`unknown data command "${sub}"\n\n${DATA_USAGE}`);
        return 1;
    }
  } catch (e) {
    err(`error: ${(e as Error).message}\n`);
    return 1;
  }
}
