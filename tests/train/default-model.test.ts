/**
 * The embedded default model as shipped (models/shapesworld-tiny): HF file layout and size budget, its
 * tokenizer against HF's own Rust tokenizers, the benchmark targets the issue sets (re-measured here from the
 * shipped weights), and the from-scratch trainer's loss going down.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { describe, expect, it } from 'vitest';
import { rng } from '../../src/data/world.js';
import { sftExample } from '../../src/data/language.js';
import { checkConfig } from '../../src/model/families/index.js';
import { parameterList } from '../../src/model/vlm.js';
import { parseSafetensorsHeader } from '../../src/model/safetensors.js';
import { main } from '../../src/node/cli.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { DEFAULT_DIMS, defaultSpec, defaultTokenizerJson } from '../../src/train/default-model.js';
import { defaultModelData, pretrain, sincos2d, weightsEngine } from '../../src/train/pretrain.js';
import { mixtureOption, stackLayers } from '../../src/node/shapes-cli.js';
import { loadCheckpointDir } from '../../src/node/load-dir.js';
import { choiceRow } from '../../src/engine/rows.js';
import { yesNoTokens } from '../../src/eval/yesno.js';
import { render } from '../../src/data/raster.js';
import { randomScene } from '../../src/data/world.js';
import { cli } from '../helpers.js';
import { promptIds, singleImageMessages } from '../../src/model/prompts.js';

const file = (n: string) => join(DEFAULT_MODEL_DIR, n);

describe('the shipped default model folder', () => {
  it('has the HF files, loads as an Idefics3 config, holds every weight at its shape, and stays under 20 MB', () => {
    for (const n of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'chat_template.jinja',
      'preprocessor_config.json',
      'processor_config.json',
      'training.json',
    ])
      expect(existsSync(file(n)), n).toBe(true);
    const total = readdirSync(DEFAULT_MODEL_DIR).reduce((s, n) => s + statSync(file(n)).size, 0);
    expect(total).toBeLessThanOrEqual(20 * 1024 * 1024);
    const cfg = checkConfig(JSON.parse(readFileSync(file('config.json'), 'utf8')));
    expect(cfg.family).toBe('idefics3');
    const bytes = new Uint8Array(readFileSync(file('model.safetensors')));
    const h = parseSafetensorsHeader(bytes, 'model.safetensors', bytes.length);
    const spec = defaultSpec();
    for (const p of parameterList(spec)) expect(h.entries[p.name]?.shape, p.name).toEqual(p.shape);
    // the training record says how long it took and on what
    const tr = JSON.parse(readFileSync(file('training.json'), 'utf8'));
    expect(tr.seconds).toBeGreaterThan(0);
    expect(tr.machine).toMatch(/\S/);
  });

  it("tokenizes prompts and answers exactly as HF's Rust tokenizers does (ids and offsets)", async () => {
    const tj = JSON.parse(readFileSync(file('tokenizer.json'), 'utf8'));
    expect(tj).toEqual(JSON.parse(JSON.stringify(defaultTokenizerJson())));
    const rust = RustTokenizer.fromString(JSON.stringify(tj));
    const data = defaultModelData();
    const rand = rng(5);
    for (let i = 0; i < 40; i++) {
      const { qa } = sftExample(rand, {});
      const prompt = promptIds(data.tokenizer, singleImageMessages(qa.question), [
        data.processor.process({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }).text,
      ]);
      for (const text of [prompt.text, qa.answer]) {
        const want = await rust.encode(text, null, { addSpecialTokens: false });
        const got = data.tokenizer.encode(text, { addSpecialTokens: false });
        expect(got.ids, text).toEqual(want.getIds());
        expect(got.offsets, text).toEqual(want.getOffsets());
        expect(got.ids).not.toContain(tj.model.vocab['<unk>']);
      }
    }
    // SmolVLM's prompt layout: one global image block of 16 image tokens between the user turn and the question
    const p = promptIds(data.tokenizer, singleImageMessages('Is the star yellow?'), [
      data.processor.process({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }).text,
    ]);
    expect(p.text).toBe(
      `<|im_start|>User:<fake_token_around_image><global-img>${'<image>'.repeat(16)}<fake_token_around_image>Is the star yellow?<end_of_utterance>\nAssistant:`,
    );
  });

  it('meets the benchmark targets: >= 90% on existence and attribute, and clearly more errors on the prior trap', async () => {
    const lines: string[] = [];
    let progress = '';
    expect(
      await main(
        ['eval', '--json', '--n', '200'],
        (s) => lines.push(s),
        (s) => (progress += s),
      ),
    ).toBe(0);
    // off a terminal, progress goes to stderr as whole lines; stdout holds only the JSON
    expect(progress).toMatch(/^eval \d+\/1000/m);
    const r = JSON.parse(lines.join(''));
    expect(Object.keys(r.categories)).toEqual(['existence', 'attribute', 'relation', 'trap', 'two-image']);
    for (const c of Object.values(r.categories) as { accuracy: number; f1: number; yes_ratio: number }[]) {
      for (const k of ['accuracy', 'f1', 'yes_ratio'] as const) expect(c[k]).toBeGreaterThanOrEqual(0);
    }
    expect(r.categories.existence.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(r.categories.attribute.accuracy).toBeGreaterThanOrEqual(0.9);
    const trapError = 1 - r.categories.trap.accuracy;
    const worstSeen = 1 - Math.min(r.categories.existence.accuracy, r.categories.attribute.accuracy);
    expect(trapError).toBeGreaterThan(worstSeen + 0.1);
  }, 120_000);
});

describe('train-default', () => {
  it('trains every weight from scratch: the SFT loss falls within a few steps', async () => {
    const rt = await createNodeRuntime('cpu');
    const losses: number[] = [];
    await pretrain(rt, {
      steps: 40,
      batch: 8,
      lr: 2e-3,
      warmup: 5,
      seed: 3,
      starYellow: 0.95,
      rowLength: 80,
      onStep: (s) => {
        losses.push(s.loss);
      },
    });
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5,
      last = losses.slice(-5).reduce((a, b) => a + b) / 5;
    expect(first).toBeGreaterThan(3); // ~log(vocab) at initialisation
    expect(last).toBeLessThan(first * 0.6);
  }, 120_000);

  it('writes a loadable model folder with its training record, and says what to do on a bad stage', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vco-default-'));
    const out = join(dir, 'model'),
      lines: string[] = [];
    expect(
      await main(
        ['train-default', '--stage', '1', '--steps', '12', '--batch', '4', '--out', out, '--json'],
        (s) => lines.push(s),
        () => {},
      ),
    ).toBe(0);
    const tr = JSON.parse(readFileSync(join(out, 'training.json'), 'utf8'));
    expect(tr.stages.map((x: { stage: number }) => x.stage)).toEqual([1]);
    expect(tr.stages[0].options.steps).toBe(12);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toMatch(/library_name: transformers/);
    // the folder is an ordinary checkpoint: eval loads it like any other
    const ev: string[] = [];
    expect(
      await main(
        ['eval', '--model', out, '--n', '4', '--json'],
        (s) => ev.push(s),
        () => {},
      ),
    ).toBe(0);
    expect(JSON.parse(ev.join('')).categories.trap.n).toBe(4);
    const err: string[] = [];
    expect(
      await main(
        ['train-default', '--stage', '2', '--out', out],
        () => {},
        (s) => err.push(s),
      ),
    ).toBe(1);
    expect(err.join('')).toMatch(/--stage 2 continues a model: give the stage 1 folder with --init DIR/);
    rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('the recipe knobs: --mixture must name known kinds and sum to 1, --position-init is for a fresh start', async () => {
    expect(mixtureOption('mixture', 'existence=0.6,relation=0.4')).toEqual([
      ['existence', 0.6],
      ['relation', 0.4],
    ]);
    expect(() => mixtureOption('mixture', 'existence=0.6,relation=0.3')).toThrow(/the shares sum to 0\.9; they must sum to 1/);
    expect(() => mixtureOption('mixture', 'existance=1')).toThrow(
      /unknown question kind "existance"; known: describe, existence/,
    );
    expect(() => mixtureOption('mixture', 'existence')).toThrow(/"existence" is not kind=share/);
    expect(() => mixtureOption('mixture', 'where=0.5,where=0.5')).toThrow(/"where" is given twice/);
    const dir = mkdtempSync(join(tmpdir(), 'vco-default-'));
    const a = await cli([
      'train-default',
      '--stage',
      '2',
      '--init',
      DEFAULT_MODEL_DIR,
      '--position-init',
      'sincos-2d',
      '--out',
      dir,
    ]);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--position-init sets a fresh initialisation; with --init the weights come from that folder/);
    const b = await cli(['train-default', '--stage', '2', '--init', DEFAULT_MODEL_DIR, '--layers', '3', '--out', dir]);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--layers takes an integer ≥ 4/);
    expect(existsSync(join(dir, 'config.json'))).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });

  it("sincos-2d is MAE's 2-D sin-cos code: column in the first half, row in the second", () => {
    // dim 8, side 2: ω = 10000^(-i/2) = [1, 0.01]; cell (row 1, column 0) and (row 0, column 1)
    const e = sincos2d(8, 2);
    const close = (got: Float32Array, want: number[]) => want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 6));
    close(e.subarray(0, 8), [0, 0, 1, 1, 0, 0, 1, 1]);
    close(e.subarray(8, 16), [Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01), 0, 0, 1, 1]);
    close(e.subarray(16, 24), [0, 0, 1, 1, Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01)]);
    expect(() => sincos2d(6, 2)).toThrow(/multiple of 4/);
  });

  it('--layers N on --init stacks fresh layers that leave every log-prob as it was (zero output projections)', async () => {
    const rt = await createNodeRuntime('cpu');
    const dims = { ...DEFAULT_DIMS, layers: DEFAULT_DIMS.layers + 2 };
    const stacked = stackLayers(loadCheckpointDir(DEFAULT_MODEL_DIR), dims, 5);
    expect([...stacked.keys()].filter((k) => k.includes('text_model.layers.5.')).length).toBeGreaterThan(0);
    expect(stacked.get('model.text_model.layers.5.self_attn.q_proj.weight')!.some((x) => x !== 0)).toBe(true);
    const deep = await weightsEngine(rt, defaultSpec(dims), stacked, dims);
    const base = await loadModelDir(rt, DEFAULT_MODEL_DIR);
    const rows = [0, 1, 2].map((i) =>
      choiceRow(base, render(randomScene(rng(40 + i))), 'Is there a red circle in the image?', Object.values(yesNoTokens(base))),
    );
    const a = await base.engine.scoreRows(rows, 'policy'),
      b = await deep.scoreRows(rows, 'policy');
    a.forEach((row, i) => row.forEach((lp, j) => expect(Math.abs(lp[0] - b[i][j][0])).toBeLessThan(1e-5)));
    await deep.release();
    await base.engine.release();
  }, 60_000);
});
