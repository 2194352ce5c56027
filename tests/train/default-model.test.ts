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
import { DEFAULT_MODEL_DIR } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { defaultSpec, defaultTokenizerJson } from '../../src/train/default-model.js';
import { defaultModelData, pretrain } from '../../src/train/pretrain.js';
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
});
