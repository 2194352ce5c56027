/**
 * Preference sets from files: the official IC-VCO layout as Hugging Face `datasets` writes it (fixtures made by
 * scripts/make-dataset-fixtures.py with datasets itself), IC-VCO JSONL, and our parquet writer read back by
 * our reader and, where Python's `datasets` is installed, by `datasets` itself. Every bad row is reported with
 * its file, line or row number, field and fix.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  readPreferenceJsonl,
  readPreferenceParquet,
  usableRecords,
  writePreferenceParquet,
} from '../../src/data/dataset.js';
import { decodePng } from '../../src/data/png.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'datasets');
const bytesOf = (p: string) => {
  const b = readFileSync(p);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};
const parquet = (set: string) =>
  readPreferenceParquet(bytesOf(join(FIXTURES, set, 'preference', 'train', 'metadata.parquet')), `${set}/metadata.parquet`);

const hasDatasets = spawnSync('python3', ['-c', 'import datasets'], { stdio: 'ignore' }).status === 0;

describe('the official layout (parquet written by HF datasets)', () => {
  it('reads every row: texts, int64 spans, Image structs with inline bytes or a path into images/', async () => {
    const r = await parquet('official');
    expect(r.rows).toBe(3);
    expect(r.problems).toEqual([]);
    expect(r.records.map((x) => [x.id, x.chosen, x.rejected])).toEqual([
      ['pair1', 'a red circle', 'a blue circle'],
      ['pair2', 'a green square', 'a green circle'],
      ['pair3', 'a blue square', 'a red square'],
    ]);
    // the spans mark the word that differs, as characters of each answer
    for (const x of r.records) {
      const [[a, b]] = x.chosenSpans,
        [[c, d]] = x.rejectedSpans;
      expect(x.chosen.slice(a, b)).not.toBe(x.rejected.slice(c, d));
      expect(x.chosen.slice(0, a)).toBe(x.rejected.slice(0, c));
    }
    // row 1 carries its images' bytes (a decodable PNG); rows 2-3 name files under images/
    const [m] = r.records[0].images;
    expect(m.path).toBe('1_m.png');
    expect(decodePng(m.bytes!, 'm').width).toBe(32);
    expect(r.records[1].images.map((i) => [i.path, i.bytes])).toEqual([
      ['images/2_m.png', undefined],
      ['images/2_mprime.png', undefined],
    ]);
  });

  it('a row without `chosen` is reported by its row number, the others are kept', async () => {
    const r = await parquet('official-bad');
    expect(r.rows).toBe(3);
    expect(r.problems).toEqual([
      {
        where: 'official-bad/metadata.parquet row 2',
        message: 'official-bad/metadata.parquet row 2: field "chosen" is missing; add it or drop the row',
      },
    ]);
    expect(r.records.map((x) => x.id)).toEqual(['pair1', 'pair3']);
    expect(() => usableRecords(r)).toThrow(
      /1 of 3 rows of official-bad\/metadata\.parquet are not valid \(fix them, or skip the bad rows\):\n.*row 2: field "chosen" is missing/,
    );
    expect(usableRecords(r, true).map((x) => x.id)).toEqual(['pair1', 'pair3']);
  });

  it('a file that is not parquet says so, naming the file', async () => {
    await expect(readPreferenceParquet(new TextEncoder().encode('{"prompt": 1}').buffer, 'x/metadata.parquet')).rejects.toThrow(
      /^x\/metadata\.parquet: not a readable parquet file .*; re-export it with pyarrow or datasets$/,
    );
  });
});

describe('IC-VCO JSONL', () => {
  const good = {
    prompt: 'Describe the image.',
    chosen: 'a red star',
    rejected: 'a blue star',
    images: ['a.png', 'b.png'],
    chosen_response_spans: [[2, 5]],
    rejected_response_spans: [[2, 6]],
  };

  it('collects every bad line with its number, field and fix', () => {
    const text = [
      JSON.stringify(good),
      '{"prompt": "cut',
      JSON.stringify({ ...good, images: ['a.png'] }),
      '',
      JSON.stringify({ ...good, chosen_response_spans: [[2, 50]] }),
    ].join('\n');
    const r = readPreferenceJsonl(text, 'set.jsonl');
    expect(r.rows).toBe(4);
    expect(r.records.map((x) => x.where)).toEqual(['set.jsonl line 1']);
    expect(r.problems.map((p) => p.where)).toEqual(['set.jsonl line 2', 'set.jsonl line 3', 'set.jsonl line 5']);
    expect(r.problems[0].message).toMatch(/^set\.jsonl line 2: not valid JSON .*; fix the line or drop it$/);
    expect(r.problems[1].message).toMatch(/^set\.jsonl line 3: field "images"/);
    expect(r.problems[2].message).toMatch(/^set\.jsonl line 5: field "chosen_response_spans"\[0\] = \[2, 50\] is not a span/);
  });

  it('an empty file is an error, not "0 rows OK"', () => {
    const r = readPreferenceJsonl('\n\n', 'empty.jsonl');
    expect(() => usableRecords(r)).toThrow(new DatasetError('empty.jsonl holds no rows: a preference set needs at least one'));
  });

  it('rows with only bad lines and skipping: nothing is left, said so', () => {
    const r = readPreferenceJsonl('nope\n', 'bad.jsonl');
    expect(() => usableRecords(r, true)).toThrow(/bad\.jsonl: none of its 1 rows is valid/);
  });
});

describe('writePreferenceParquet', () => {
  const png = new Uint8Array(readFileSync(join(FIXTURES, 'official', 'images', '2_m.png')));
  const rows = [
    {
      prompt: 'Describe the image.',
      chosen: 'a red circle',
      rejected: 'a blue circle',
      images: [
        { path: '1_m.png', bytes: png },
        { path: 'images/2_m.png', bytes: null },
      ] as [{ path: string | null; bytes: Uint8Array | null }, { path: string | null; bytes: Uint8Array | null }],
      chosen_response_spans: [[2, 5]] as [number, number][],
      rejected_response_spans: [[2, 6]] as [number, number][],
      id: 'p1',
    },
  ];

  it('reads back through our reader', async () => {
    const b = await writePreferenceParquet(rows);
    const r = await readPreferenceParquet(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer, 'ours');
    expect(r.problems).toEqual([]);
    const [x] = r.records;
    expect([x.id, x.prompt, x.chosen, x.rejected, x.chosenSpans, x.rejectedSpans]).toEqual([
      'p1',
      'Describe the image.',
      'a red circle',
      'a blue circle',
      [[2, 5]],
      [[2, 6]],
    ]);
    expect(Array.from(x.images[0].bytes!)).toEqual(Array.from(png));
    expect(x.images[1]).toEqual({ path: 'images/2_m.png', bytes: undefined });
  });

  it.runIf(hasDatasets)(
    'is read by Hugging Face datasets with the official features (Image structs, int64 spans)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vco-parquet-'));
      writeFileSync(join(dir, 'metadata.parquet'), await writePreferenceParquet(rows));
      const py = `
import json, sys, datasets
ds = datasets.load_dataset('parquet', data_files=sys.argv[1], split='train')
r = ds[0]
print(json.dumps({'features': str(ds.features['images']), 'spans': r['chosen_response_spans'], 'chosen': r['chosen'],
  'paths': [i['path'] for i in r['images']], 'nbytes': [len(i['bytes']) if i['bytes'] else None for i in r['images']]}))`;
      const out = JSON.parse(
        execFileSync('python3', ['-c', py, join(dir, 'metadata.parquet')], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        })
          .trim()
          .split('\n')
          .pop()!,
      );
      expect(out).toEqual({
        features: 'List(Image(mode=None, decode=False))',
        spans: [[2, 5]],
        chosen: 'a red circle',
        paths: ['1_m.png', 'images/2_m.png'],
        nbytes: [png.length, null],
      });
    },
    60_000,
  );
});
