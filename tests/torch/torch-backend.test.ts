/**
 * `--backend torch`: HF transformers + PEFT in PyTorch worker processes, the loss still from src/loss.
 *  - parity: every reference case (../shared/reference and tests/fixtures/reference) through the worker:
 *    token log-probs 1e-4, both IC-VCO presets' loss 1e-5 relative, LoRA gradients 1e-3 relative;
 *  - distributed for real: torchrun with 2 ranks (gloo) trains the default model to the adapter of one process
 *    with the same global batch (1e-5), and a run resumed from a checkpoint to the identical adapter;
 *  - DeepSpeed ZeRO-2 (the paper's launch) on 2 ranks: the same adapter (1e-5), partitioned optimizer state, and
 *    a resumed run the identical adapter;
 *  - the run folder's adapter loads with PEFT in Python and in the ORT engine (`vco-lab eval --adapter`'s
 *    loader) with the same token log-probs (1e-4).
 * Needs the Python side (.venv-torch with torch, transformers, peft and python/; .ci/run installs it).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shapesworldSet } from '../../src/data/sets.js';
import { shapesworldSamples } from '../../src/engine/datasets.js';
import { forwardSample } from '../../src/engine/sample.js';
import { icvco } from '../../src/loss/icvco.js';
import { parseSafetensorsHeader, decodeTensor } from '../../src/model/safetensors.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { torchBackend } from '../../src/node/torch/backend.js';
import { checkModelTorch } from '../../src/node/torch/reference.js';
import { loadCase } from '../../src/node/reference-case.js';
import { TorchWorkers, torchPython } from '../../src/node/torch/workers.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { cli, FIXTURE_CASES, PUBLIC_CASES, REPO } from '../helpers.js';

const hasTorch = () =>
  spawnSync(torchPython(), ['-c', 'import torch, transformers, peft'], { stdio: 'ignore', env: { ...process.env } }).status === 0;

function tensors(file: string): Map<string, Float32Array> {
  const b = new Uint8Array(readFileSync(file));
  const h = parseSafetensorsHeader(b, file, b.byteLength);
  return new Map(
    Object.entries(h.entries).map(([k, e]) => [
      k,
      Float32Array.from(
        decodeTensor(e, b.subarray(h.dataStart + e.data_offsets[0], h.dataStart + e.data_offsets[1])) as Float32Array,
      ),
    ]),
  );
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let d = 0;
  for (const [k, x] of a) x.forEach((v, i) => (d = Math.max(d, Math.abs(v - b.get(k)![i]))));
  return d;
}

const hasDeepSpeed = () =>
  spawnSync(torchPython(), ['-c', 'import deepspeed'], { stdio: 'ignore', env: { ...process.env } }).status === 0;

const RUN = ['--backend', 'torch', '--dataset', 'shapesworld', '--shapesworld_pairs', '8', '--validation_split', '0'];
const SMALL = ['--lora_r', '4', '--lora_alpha', '8', '--lora_target_modules', 'q_proj,v_proj', '--learning_rate', '0.01'];

describe.runIf(hasTorch())('the PyTorch backend', () => {
  const cases = [...PUBLIC_CASES, ...FIXTURE_CASES].filter((c) => existsSync(join(c.dir, 'case.json')));

  it("passes every reference case: log-probs, both presets' loss, LoRA gradients", async () => {
    expect(cases.length).toBeGreaterThanOrEqual(6);
    // the command once (its exit code and JSON), then the rest through one worker (Python starts once)
    const r = await cli(['reference', cases[0].dir, '--backend', 'torch', '--json']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).pass).toBe(true);
    const w = await TorchWorkers.start();
    try {
      for (const c of cases) {
        const j = await checkModelTorch(loadCase(c.dir), { workers: w });
        expect(j.pass, c.dir).toBe(true);
        expect(j.max_errors.logprob_abs).toBeLessThanOrEqual(1e-4);
        expect(j.max_errors.loss_rel).toBeLessThanOrEqual(1e-5);
        expect(j.max_errors.lora_grad_rel).toBeLessThanOrEqual(1e-3);
      }
    } finally {
      await w.close();
    }
  }, 900_000);

  it('torchrun with 2 ranks gives the adapter of one process with the same global batch; a resumed run the identical one', async () => {
    const root = mkdtempSync(join(tmpdir(), 'vco-torch-'));
    const one = join(root, 'one'),
      two = join(root, 'two');
    const args = ['--max_steps', '2', '--save_steps', '1', ...RUN, ...SMALL];
    // the same global batch of 4: one process with 4 samples, or 2 ranks with 2 each
    let r = await cli(['train', ...args, '--per_device_train_batch_size', '4', '--output_dir', one]);
    expect(r.code, r.err).toBe(0);
    r = await cli(['train', ...args, '--per_device_train_batch_size', '2', '--nproc_per_node', '2', '--output_dir', two]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/PyTorch backend: 2 rank\(s\)/);
    const d = maxDiff(
      tensors(join(one, 'adapter', 'adapter_model.safetensors')),
      tensors(join(two, 'adapter', 'adapter_model.safetensors')),
    );
    console.log(`torch backend: 1 rank vs 2 ranks (gloo), max |Δ| over the adapter after 2 steps = ${d.toExponential(2)}`);
    expect(d).toBeLessThanOrEqual(1e-5);
    // resume the 2-rank run from checkpoint-1: the same adapter, bit for bit
    const resumed = join(root, 'resumed');
    cpSync(two, resumed, { recursive: true });
    for (const f of ['checkpoint-2', 'adapter', 'train_results.json']) rmSync(join(resumed, f), { recursive: true, force: true });
    r = await cli(['train', '--resume', resumed]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/resumed .* at step 1/);
    const a = readFileSync(join(two, 'adapter', 'adapter_model.safetensors')),
      b = readFileSync(join(resumed, 'adapter', 'adapter_model.safetensors'));
    expect(tensors(join(resumed, 'adapter', 'adapter_model.safetensors'))).toEqual(
      tensors(join(two, 'adapter', 'adapter_model.safetensors')),
    );
    expect(b.length).toBe(a.length);
  }, 900_000);

  it.runIf(hasDeepSpeed())(
    'DeepSpeed ZeRO-2 (configs/deepspeed-zero2.json) on 2 ranks gives the adapter of one process; a resumed run the identical one',
    async () => {
      const root = mkdtempSync(join(tmpdir(), 'vco-torch-ds-'));
      const one = join(root, 'one'),
        zero = join(root, 'zero2');
      const args = ['--max_steps', '2', '--save_steps', '1', ...RUN, ...SMALL, '--max_grad_norm', '0.05'];
      let r = await cli(['train', ...args, '--per_device_train_batch_size', '4', '--output_dir', one]);
      expect(r.code, r.err).toBe(0);
      r = await cli([
        'train',
        ...args,
        ...['--per_device_train_batch_size', '2', '--nproc_per_node', '2'],
        ...['--deepspeed', join(REPO, 'configs', 'deepspeed-zero2.json'), '--output_dir', zero],
      ]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/DeepSpeed ZeRO stage 2 from .*deepspeed-zero2\.json/);
      // each rank holds its own partition of the AdamW state (DeepSpeed's checkpoint layout)
      for (const rank of [0, 1])
        expect(
          existsSync(join(zero, 'checkpoint-1', 'deepspeed', 'state', `zero_pp_rank_${rank}_mp_rank_00_optim_states.pt`)),
        ).toBe(true);
      // the clipping bound is tight enough to act (grad norms of this run are ~0.1-1): DeepSpeed clips as torch does
      const norms = (run: string) =>
        readFileSync(join(run, 'metrics.jsonl'), 'utf8')
          .split('\n')
          .filter((l) => l.includes('"grad_norm"'))
          .map((l) => (JSON.parse(l) as { grad_norm: number }).grad_norm);
      expect(Math.max(...norms(one))).toBeGreaterThan(0.05);
      // and DeepSpeed's global norm (over its partitions, before clipping) is the norm of the summed gradient
      norms(zero).forEach((g, i) => expect(Math.abs(g - norms(one)[i]) / norms(one)[i]).toBeLessThan(1e-5));
      const d = maxDiff(
        tensors(join(one, 'adapter', 'adapter_model.safetensors')),
        tensors(join(zero, 'adapter', 'adapter_model.safetensors')),
      );
      console.log(
        `torch backend: 1 rank vs DeepSpeed ZeRO-2 on 2 ranks (gloo), max |Δ| over the adapter after 2 steps = ${d.toExponential(2)}`,
      );
      expect(d).toBeLessThanOrEqual(1e-5);
      const resumed = join(root, 'resumed');
      cpSync(zero, resumed, { recursive: true });
      for (const f of ['checkpoint-2', 'adapter', 'train_results.json'])
        rmSync(join(resumed, f), { recursive: true, force: true });
      r = await cli(['train', '--resume', resumed]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/resumed .* at step 1/);
      expect(readFileSync(join(resumed, 'adapter', 'adapter_model.safetensors'))).toEqual(
        readFileSync(join(zero, 'adapter', 'adapter_model.safetensors')),
      );
    },
    900_000,
  );

  it("the run folder's adapter scores the same in PEFT (Python) and in the ORT engine (vco-lab eval --adapter's loader)", async () => {
    const root = mkdtempSync(join(tmpdir(), 'vco-torch-'));
    const out = join(root, 'run');
    const r = await cli([
      'train',
      '--max_steps',
      '2',
      '--per_device_train_batch_size',
      '2',
      ...RUN,
      ...SMALL,
      '--output_dir',
      out,
    ]);
    expect(r.code, r.err).toBe(0);
    const adapter = join(out, 'adapter');
    expect(JSON.parse(readFileSync(join(adapter, 'adapter_config.json'), 'utf8')).peft_type).toBe('LORA');
    // the ORT engine with the adapter
    const rt = await createNodeRuntime('cpu');
    const m = await loadModelDir(rt, DEFAULT_MODEL_DIR, adapter);
    const samples = shapesworldSamples(m, shapesworldSet({ pairs: 2, seed: 9 }));
    const reqs = icvco.requirements(icvco.defaults());
    // PEFT in the worker, the same samples and rows
    const w = await TorchWorkers.start();
    try {
      await w.request(0, 'load', { model: DEFAULT_MODEL_DIR, adapter, dtype: 'float32' });
      const torch = torchBackend(w);
      const fromTorch = await torch.score(samples, reqs, 'policy', false);
      for (let k = 0; k < samples.length; k++) {
        const ort = await forwardSample(m.engine, samples[k], reqs, 'policy');
        for (const [key, v] of Object.entries(ort.scores)) {
          const t = fromTorch.scores[k][key as keyof typeof ort.scores]!;
          // sums of up to ~40 token log-probs, each within 1e-4 of the other backend's
          expect(Math.abs(t - v), `${samples[k].id} ${key}`).toBeLessThanOrEqual(1e-4 * samples[k].responses.y.length);
        }
        // and the adapter changed the policy
        const ref = await forwardSample(m.engine, samples[k], reqs, 'reference');
        expect(
          Object.entries(ort.scores).some(([key, v]) => Math.abs(v - ref.scores[key as keyof typeof ref.scores]!) > 1e-4),
        ).toBe(true);
      }
    } finally {
      await w.close();
      await m.engine.release();
    }
    const ev = await cli(['eval', '--adapter', adapter, '--n', '2', '--json']);
    expect(ev.code, ev.err).toBe(0);
  }, 900_000);
});
