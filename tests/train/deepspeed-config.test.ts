/**
 * `--deepspeed FILE`: a DeepSpeed config resolved as the HF Trainer resolves one ("auto" from the run, explicit
 * values that disagree refused with the file, the field and the fix), and the configs the repository ships.
 * The training itself under DeepSpeed is tested in tests/torch/torch-backend.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../../src/node/train-config.js';
import { resolveDeepSpeedConfig } from '../../src/node/torch/deepspeed.js';
import { cli, REPO } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'vco-ds-'));
const file = (name: string, json: unknown) => {
  const f = join(dir, name);
  writeFileSync(f, typeof json === 'string' ? json : JSON.stringify(json));
  return f;
};
const RUN = {
  per_device_train_batch_size: 2,
  gradient_accumulation_steps: 4,
  max_grad_norm: 1,
  torch_dtype: 'float32' as const,
  world: 2,
};

describe('DeepSpeed config', () => {
  it('resolves the shipped ZeRO-2 config\'s "auto" values from the run, and gives DeepSpeed one step per optimizer step', () => {
    const { config, notes } = resolveDeepSpeedConfig(join(REPO, 'configs', 'deepspeed-zero2.json'), RUN);
    expect(config.zero_optimization).toMatchObject({ stage: 2, overlap_comm: true });
    expect((config.zero_optimization as Record<string, unknown>).reduce_bucket_size).toBeUndefined();
    expect(config).toMatchObject({
      train_micro_batch_size_per_gpu: 1,
      gradient_accumulation_steps: 1,
      train_batch_size: 2,
      gradient_clipping: 1,
      bf16: { enabled: false },
      fp16: { enabled: false },
      zero_allow_untested_optimizer: true,
    });
    expect(JSON.stringify(config)).not.toContain('"auto"');
    expect(notes[0]).toMatch(/ZeRO stage 2/);
    const bf = resolveDeepSpeedConfig(join(REPO, 'configs', 'deepspeed-zero2.json'), {
      ...RUN,
      torch_dtype: 'bfloat16',
      max_grad_norm: null,
    }).config;
    expect(bf).toMatchObject({ bf16: { enabled: true }, fp16: { enabled: false }, gradient_clipping: 0 });
  });

  it("the paper's run config names the ZeRO-2 config, and both resolve for 8 ranks", () => {
    const c = resolveTrainConfig({ file: join(REPO, 'configs', 'icvco-paper.json') });
    expect(c.deepspeed).toBe('configs/deepspeed-zero2.json');
    const { config } = resolveDeepSpeedConfig(join(REPO, c.deepspeed!), { ...c, world: c.nproc_per_node * c.nnodes });
    expect(config).toMatchObject({ train_batch_size: 8, bf16: { enabled: true }, gradient_clipping: c.max_grad_norm });
  });

  it.each([
    ['stage 3', { zero_optimization: { stage: 3 } }, /zero_optimization\.stage: 3 shards the frozen weights.*use 2/],
    ['a stage that does not exist', { zero_optimization: { stage: 'two' } }, /zero_optimization\.stage: takes 0, 1 or 2/],
    ['an optimizer section', { optimizer: { type: 'AdamW' } }, /optimizer: remove it: vco-lab train's AdamW/],
    ['a scheduler section', { scheduler: { type: 'WarmupLR' } }, /scheduler: remove it/],
    [
      "a micro-batch that is not the run's",
      { train_micro_batch_size_per_gpu: 4 },
      /train_micro_batch_size_per_gpu: 4 disagrees with the run's 2; write "auto" or 2/,
    ],
    ["a global batch that is not the run's", { train_batch_size: 64 }, /train_batch_size: 64 disagrees with the run's 16/],
    [
      'clipping that is not --max_grad_norm',
      { gradient_clipping: 0.5 },
      /gradient_clipping: 0\.5 disagrees with --max_grad_norm 1/,
    ],
    [
      'bf16 on a float32 model',
      { bf16: { enabled: true } },
      /bf16\.enabled: true, but --torch_dtype is float32; pass --torch_dtype bfloat16/,
    ],
    ['fp16', { fp16: { enabled: true } }, /fp16\.enabled: fp16 is not a torch_dtype of vco-lab train/],
    ['an array', [1, 2], /a DeepSpeed config is one JSON object, got an array/],
    ['text that is not JSON', '{"zero_optimization": {', /not JSON/],
  ])('refuses %s, naming the file and the field', (_what, json, message) => {
    const f = file(`bad-${Math.random().toString(36).slice(2)}.json`, json);
    let err: Error | undefined;
    try {
      resolveDeepSpeedConfig(f, RUN);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.name).toBe('UsageError');
    expect(err?.message.startsWith(f)).toBe(true);
    expect(err?.message).toMatch(message);
  });

  it('--deepspeed needs the torch backend, and a missing file is a usage error before anything starts', async () => {
    const out = join(dir, 'never');
    let r = await cli(['train', '--deepspeed', join(REPO, 'configs', 'deepspeed-zero2.json'), '--output_dir', out]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/deepspeed is an option of the torch backend: add --backend torch/);
    r = await cli(['train', '--backend', 'torch', '--deepspeed', join(dir, 'nope.json'), '--output_dir', out]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--deepspeed .*nope\.json: cannot read it/);
  });
});
