/**
 * `vco-lab train` on the default model: the same ShapesWorld set exported as IC-VCO JSONL and in the official
 * parquet layout trains to the same adapter; a run killed mid-way (SIGKILL) or stopped with Ctrl-C (SIGINT)
 * resumes to the bitwise-identical adapter; the adapter raises held-out reward accuracy and loads in
 * `vco-lab eval --adapter`; bad datasets give row-numbered errors and leave no output folder; the config takes
 * HF/TRL names and the official VCOConfig's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../src/data/png.js';
import { render } from '../../src/data/raster.js';
import { makePreferenceSample } from '../../src/data/edits.js';
import { REPO_ROOT } from '../../src/node/model-dir.js';
import { TRAIN_DEFAULTS, resolveTrainConfig } from '../../src/node/train-config.js';
import { cli } from '../helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'vco-train-cli-'));

/** a small, fast run: LoRA r 4 on the top LM layer, batch 2, IC-VCO */
const SMALL = ['--lora_r', '4', '--lora_alpha', '8', '--lora_top_k', '1', '--per_device_train_batch_size', '2'];
const SMALL_RUN = [...SMALL, '--learning_rate', '0.005', '--benchmark', 'false', '--logging_steps', '1'];

const adapterBytes = (dir: string) => readFileSync(join(dir, 'adapter', 'adapter_model.safetensors'));

function spawnTrain(args: string[]): ChildProcess {
  return spawn(process.execPath, [join(REPO_ROOT, 'bin', 'vco-lab.mjs'), 'train', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

const exited = (p: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string }>((res) => {
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    p.on('exit', (code, signal) => res({ code, signal, err }));
  });

async function waitFor(file: string, p: ChildProcess, timeout = 240_000): Promise<void> {
  const t0 = Date.now();
  while (!existsSync(file)) {
    if (p.exitCode !== null) throw new Error(`the run ended before ${file} appeared`);
    if (Date.now() - t0 > timeout) throw new Error(`timed out waiting for ${file}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('vco-lab train', () => {
  it('the same set as JSONL and in the official parquet layout trains to the same adapter, which loads in eval', async () => {
    const root = tmp();
    for (const layout of ['jsonl', 'official'])
      expect(
        (await cli(['data', 'export', '--out', join(root, layout), '--n', '12', '--seed', '5', '--layout', layout])).code,
      ).toBe(0);
    expect(existsSync(join(root, 'official', 'preference', 'train', 'metadata.parquet'))).toBe(true);
    const runs: string[] = [];
    for (const [layout, dataset] of [
      ['jsonl', join(root, 'jsonl', 'preference.jsonl')],
      ['official', join(root, 'official')],
    ]) {
      const out = join(root, `run-${layout}`);
      const r = await cli(['train', '--dataset', dataset, '--max_steps', '4', '--output_dir', out, ...SMALL_RUN]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/data: 12 rows of .*; 11 training samples, 1 held out/);
      runs.push(out);
    }
    expect(adapterBytes(runs[0]).equals(adapterBytes(runs[1]))).toBe(true);
    // the run folder: config, metrics (TRL names and the official log's), checkpoints, the PEFT adapter
    const lines = readFileSync(join(runs[0], 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].event).toBe('training_start');
    const step = lines.find((l) => l.step === 2 && l.loss !== undefined);
    for (const k of [
      'learning_rate',
      'grad_norm',
      'multi_rewards/accuracies',
      'train_multi_rewards/accuracies',
      'train_loss_combined',
      'vcdist_gate_pass_rate',
    ])
      expect(step, k).toHaveProperty([k]);
    expect(lines.at(-1).event).toBe('training_end');
    expect(JSON.parse(readFileSync(join(runs[0], 'run.json'), 'utf8')).max_steps).toBe(4);
    for (const f of [
      'checkpoint-4/trainer_state.json',
      'checkpoint-4/optimizer.safetensors',
      'adapter/adapter_config.json',
      'train_results.json',
    ])
      expect(existsSync(join(runs[0], f)), f).toBe(true);
    const ev = await cli(['eval', '--adapter', join(runs[0], 'adapter'), '--n', '4', '--json']);
    expect(ev.code, ev.err).toBe(0);
    expect(JSON.parse(ev.out).categories).toHaveProperty('two-image');
  }, 600_000);

  it('killed mid-run (SIGKILL) or stopped with Ctrl-C (SIGINT), --resume ends with the bitwise-identical adapter', async () => {
    const root = tmp();
    const args = (out: string) => [
      '--dataset',
      'shapesworld',
      '--shapesworld_pairs',
      '16',
      '--max_steps',
      '6',
      '--save_steps',
      '2',
      '--output_dir',
      out,
      ...SMALL_RUN,
    ];
    const straight = join(root, 'straight');
    expect((await cli(['train', ...args(straight)])).code).toBe(0);

    // SIGKILL once checkpoint-2 is written: nothing after it survives but the checkpoint
    const killed = join(root, 'killed');
    let p = spawnTrain(args(killed));
    let done = exited(p);
    await waitFor(join(killed, 'checkpoint-2', 'trainer_state.json'), p);
    p.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    expect(existsSync(join(killed, 'adapter'))).toBe(false);
    const r = await cli(['train', '--resume', killed]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/resumed .* at step [2-6]/);
    expect(adapterBytes(killed).equals(adapterBytes(straight))).toBe(true);

    // Ctrl-C: the run saves a checkpoint after the current step and exits 130
    const stopped = join(root, 'stopped');
    p = spawnTrain(args(stopped));
    done = exited(p);
    await waitFor(join(stopped, 'checkpoint-2', 'trainer_state.json'), p);
    p.kill('SIGINT');
    const s = await done;
    expect(s.code, s.err).toBe(130);
    expect(s.err).toMatch(/interrupted: checkpoint-\d saved; continue with --resume/);
    expect((await cli(['train', '--resume', stopped])).code).toBe(0);
    expect(adapterBytes(stopped).equals(adapterBytes(straight))).toBe(true);
    // the metrics of the resumed run: each step once
    const steps = readFileSync(join(stopped, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.loss !== undefined && l.event === undefined)
      .map((l) => l.step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
  }, 900_000);

  it('training raises held-out reward accuracy (single-image branch) from 0 to above chance', async () => {
    const out = join(tmp(), 'run');
    const r = await cli([
      'train',
      '--dataset',
      'shapesworld',
      '--shapesworld_pairs',
      '64',
      '--max_steps',
      '24',
      '--validation_split',
      '0.25',
      '--objective',
      'dpo',
      '--output_dir',
      out,
      ...SMALL,
      '--learning_rate',
      '0.005',
      '--benchmark',
      'false',
    ]);
    expect(r.code, r.err).toBe(0);
    const final = JSON.parse(readFileSync(join(out, 'train_results.json'), 'utf8')).final_evaluation;
    // LoRA B starts at zero: policy = reference, every held-out reward exactly 0, accuracy 0 (ties count 0)
    expect(final.eval_samples).toBe(16);
    expect(final.eval_heldout_single_accuracy).toBeGreaterThan(0.6);
  }, 600_000);

  it('bad datasets: row-numbered errors, and no output folder', async () => {
    const root = tmp();
    const s = makePreferenceSample(3);
    mkdirSync(join(root, 'images'));
    writeFileSync(join(root, 'images', 'm.png'), encodePng(render(s.m)));
    writeFileSync(join(root, 'images', 'mp.png'), encodePng(render(s.mPrime)));
    writeFileSync(join(root, 'images', 'bad.png'), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
    const row = {
      prompt: s.prompt,
      chosen: s.chosen,
      rejected: s.rejected,
      images: ['images/m.png', 'images/mp.png'],
      chosen_response_spans: s.chosenSpans,
      rejected_response_spans: s.rejectedSpans,
    };
    const cases: [object, RegExp][] = [
      [{ ...row, chosen: undefined }, /line 2: field "chosen" is missing/],
      [{ ...row, images: ['images/m.png'] }, /line 2: field "images" has 1 entries; a preference row needs exactly 2/],
      [{ ...row, images: ['images/m.png', 'images/nope.png'] }, /line 2: field "images"\[1\] = "images\/nope.png": no file at/],
      [{ ...row, images: ['images/m.png', 'images/bad.png'] }, /line 2: field "images"\[1\]: .*bad\.png: not a readable PNG/],
      [{ ...row, chosen_response_spans: [[0, 999]] }, /line 2: field "chosen_response_spans"\[0\] = \[0, 999\] is not a span/],
    ];
    for (const [i, [bad, msg]] of cases.entries()) {
      const f = join(root, `set${i}.jsonl`);
      writeFileSync(f, [row, bad].map((x) => JSON.stringify(x)).join('\n'));
      const out = join(root, `out${i}`);
      const r = await cli(['train', '--dataset', f, '--output_dir', out, '--max_steps', '1']);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/1 of 2 rows of .* are not valid \(fix them, or skip the bad rows\)/);
      expect(r.err).toMatch(msg);
      expect(existsSync(out), 'no output folder for a run that did not start').toBe(false);
    }
    // a parquet file missing a column: the official fixture's row 2 has no `chosen`
    const fixture = join(REPO_ROOT, 'tests', 'fixtures', 'datasets', 'official-bad');
    const r = await cli(['train', '--dataset', fixture, '--output_dir', join(root, 'pq'), '--max_steps', '1']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/metadata\.parquet row 2: field "chosen" is missing/);
    expect(existsSync(join(root, 'pq'))).toBe(false);
  }, 300_000);

  it('config: defaults, a file, flags, the official VCOConfig names; unknown fields and bad values exit 2', async () => {
    const p = await cli(['train', '--print-config']);
    expect(JSON.parse(p.out)).toEqual(TRAIN_DEFAULTS);
    const dir = tmp();
    writeFileSync(
      join(dir, 'run.json'),
      JSON.stringify({ objective: 'icvco:reference-code', learning_rate: 1e-4, single_weight: 1.5 }),
    );
    const c = resolveTrainConfig({
      file: join(dir, 'run.json'),
      flags: { 'learning-rate': '2e-4', vcdist_threshold: '0.6', use_single_branch_token_mask: 'false' },
    });
    expect(c.learning_rate).toBe(2e-4);
    expect(c.objective_settings).toEqual({ lambda_s: 1.5, tau: 0.6, tokenMask: false });
    const paper = resolveTrainConfig({ flags: { objective: 'icvco:paper', single_weight: '2', anchor_weight: '0.5' } });
    expect(paper.objective_settings).toEqual({ lambda2: 2, eta1: 0.5, eta2: 0.5 });
    for (const [args, msg] of [
      [['--learning_rat', '1'], /unknown field "learning_rat"/],
      [['--learning_rate', '-1'], /learning_rate takes a number > 0 and ≤ 1, got "-1"/],
      [['--objective', 'foo'], /objective foo: /],
      [
        ['--objective', 'dpo', '--beta', '0.2', '--single_weight', '2'],
        /single_weight is an IC-VCO option; objective dpo has no such setting/,
      ],
      [['--ep', 'tpu'], /ep takes one of cpu, webgpu, cuda, wasm/],
    ] as const) {
      const r = await cli(['train', ...args, '--output_dir', join(dir, 'never')]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(msg);
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});
