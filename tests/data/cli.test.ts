import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodePng } from '../../src/data/png.js';
import { dataCommand } from '../../src/node/data-cli.js';

async function run(...args: string[]): Promise<{ code: number; text: string }> {
  let text = '';
  const code = await dataCommand(
    args,
    (s) => (text += s),
    (s) => (text += s),
  );
  return { code, text };
}

describe('vco-lab data', () => {
  const root = mkdtempSync(join(tmpdir(), 'vco-data-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("exports a preference set that checks, with images of m and m'", async () => {
    const dir = join(root, 'prefs');
    expect((await run('export', '--out', dir, '--n', '6', '--seed', '4')).code).toBe(0);
    expect(readdirSync(root).filter((f) => f.startsWith('.'))).toEqual([]); // no temporary folder left behind
    const rows = readFileSync(join(dir, 'preference.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.length).toBe(6);
    expect(readdirSync(join(dir, 'images')).length).toBe(12);
    const img = decodePng(readFileSync(join(dir, rows[0].images[0])));
    expect([img.width, img.height]).toEqual([64, 64]);
    expect(await run('check', join(dir, 'preference.jsonl'))).toEqual({ code: 0, text: '6 rows OK\n' });
    // the same seed gives the same set; re-exporting over a previous export is allowed
    const again = join(root, 'prefs2');
    await run('export', '--out', again, '--n', '6', '--seed', '4');
    expect(readFileSync(join(again, 'preference.jsonl'), 'utf8')).toBe(readFileSync(join(dir, 'preference.jsonl'), 'utf8'));
    expect((await run('export', '--out', dir, '--n', '2', '--seed', '4', '--negatives', 'synthetic')).code).toBe(0);
    expect(await run('check', join(dir, 'preference.jsonl'))).toEqual({ code: 0, text: '2 rows OK\n' });
    expect(readdirSync(join(dir, 'images')).length).toBe(4);
  });

  it('exports an SFT set that checks', async () => {
    const dir = join(root, 'sft');
    expect((await run('export', '--out', dir, '--kind', 'sft', '--n', '5')).code).toBe(0);
    expect(await run('check', join(dir, 'sft.jsonl'))).toEqual({ code: 0, text: '5 rows OK\n' });
  });

  it('check reports the first problem and exits 1', async () => {
    const dir = join(root, 'bad');
    await run('export', '--out', dir, '--n', '3');
    const file = join(dir, 'preference.jsonl'),
      lines = readFileSync(file, 'utf8').trim().split('\n');
    const row = JSON.parse(lines[1]);
    writeFileSync(file, [lines[0], JSON.stringify({ ...row, chosen_response_spans: [[30, 12]] }), lines[2]].join('\n'));
    let r = await run('check', file);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/line 2: field "chosen_response_spans"\[0\] = \[30, 12\] is not a span/);
    writeFileSync(file, [lines[0], JSON.stringify({ ...row, images: ['images/nope.png', row.images[1]] })].join('\n'));
    r = await run('check', file);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/line 2: field "images"\[0\] = "images\/nope.png": no file at/);
    writeFileSync(join(dir, row.images[1]), 'not a png');
    writeFileSync(file, lines[1]);
    r = await run('check', file);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/line 1: field "images"\[1\]: .*_mprime\.png: not a readable PNG/);
    r = await run('check', join(dir, 'missing.jsonl'));
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/^error: .*missing\.jsonl/);
  });

  it('refuses bad options and folders with other files, leaving them untouched', async () => {
    const dir = join(root, 'mine');
    mkdirSync(dir);
    writeFileSync(join(dir, 'notes.txt'), 'keep me');
    const r = await run('export', '--out', dir, '--n', '2');
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/holds other files \(notes\.txt\)/);
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('keep me');
    expect(existsSync(join(dir, 'preference.jsonl'))).toBe(false);
    expect((await run('export', '--out', join(root, 'x'), '--kind', 'dpo')).text).toMatch(/--kind must be preference or sft/);
    expect((await run('export', '--out', join(root, 'x'), '--n', '0')).text).toMatch(/--n must be an integer >= 1/);
    expect((await run('export', '--n', '2')).text).toMatch(/needs --out/);
    expect((await run('export', '--bogus')).code).toBe(1);
    expect((await run('frobnicate')).code).toBe(1);
    expect((await run('help')).text).toMatch(/usage: vco-lab data/);
    expect(existsSync(join(root, 'x'))).toBe(false);
  });

  it('prints the similarity report', async () => {
    const r = await run('similarity', '--n', '4', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.text);
    expect(j.n).toBe(4);
    expect(j.edited.mean).toBeGreaterThan(j.synthetic.mean);
    expect((await run('similarity', '--n', '3')).text).toMatch(/edited m': +0\.\d{4} ± 0\.\d{4}/);
  });
});
