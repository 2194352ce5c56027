/**
 * The model families against HF transformers + PEFT: every public reference case, on the CPU EP and on the
 * WebGPU EP (Dawn; SwiftShader here): token log-probs, both presets' loss, and every LoRA gradient.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/node/cli.js';
import { loadCase } from '../../src/node/reference-case.js';
import { checkModel } from '../../src/node/reference-model.js';
import { FIXTURE_CASES, PUBLIC_CASES, requireReference } from '../helpers.js';

beforeAll(requireReference);

describe('vco-lab reference runs the model (CPU EP)', () => {
  for (const { name, dir } of [...PUBLIC_CASES, ...FIXTURE_CASES]) {
    it(`${name}: log-probs 1e-4, loss 1e-5, LoRA gradients 1e-3`, async () => {
      const r = await checkModel(loadCase(dir), 'cpu');
      expect(r.logprobs.policy_max_abs_err).toBeLessThanOrEqual(1e-4);
      expect(r.logprobs.reference_max_abs_err).toBeLessThanOrEqual(1e-4);
      for (const p of Object.values(r.presets)) {
        expect(p.loss.rel_err).toBeLessThanOrEqual(1e-5);
        expect(p.lora_grad_max_rel_err).toBeLessThanOrEqual(1e-3);
        expect(p.zero_tensors_nonzero).toEqual([]);
      }
      if (name === 'llava-public-visionlora') {
        // vision_feature_layer -2: the last tower layer's LoRA gets an exactly zero gradient
        expect(r.presets.paper.zero_tensors).toBeGreaterThan(0);
      }
      expect(r.pass).toBe(true);
    }, 600_000);
  }
});

describe('vco-lab reference --device webgpu (Dawn)', () => {
  for (const { name, dir } of PUBLIC_CASES) {
    it(`${name}: log-probs within 1e-3 and the same loss and gradients`, async () => {
      let out = '';
      const code = await main(
        ['reference', dir, '--device', 'webgpu', '--json'],
        (s) => {
          out += s;
        },
        () => {},
      );
      const r = JSON.parse(out);
      expect(r.device).toBe('webgpu');
      expect(r.max_errors.logprob_abs).toBeLessThanOrEqual(1e-3);
      expect(r.pass).toBe(true);
      expect(code).toBe(0);
    }, 900_000);
  }
});

describe('config values the graphs implement change the numbers (a config read wrong would fail the case)', () => {
  function withConfig(caseDir: string, mutate: (c: Record<string, any>) => void): string {
    const dir = mkdtempSync(join(tmpdir(), 'vco-config-case-'));
    cpSync(caseDir, dir, { recursive: true });
    const f = join(dir, 'model', 'config.json');
    const c = JSON.parse(readFileSync(f, 'utf8'));
    mutate(c);
    writeFileSync(f, JSON.stringify(c));
    return dir;
  }
  it('without the llama3 RoPE scaling, or without the o_proj bias, the attention-bias case fails', async () => {
    const [ide] = FIXTURE_CASES;
    const noScaling = await checkModel(
      loadCase(
        withConfig(ide.dir, (c) => {
          c.text_config.rope_parameters = { rope_type: 'default', rope_theta: 10000 };
        }),
      ),
      'cpu',
    );
    expect(noScaling.logprobs.policy_max_abs_err).toBeGreaterThan(1e-3);
    const noBias = await checkModel(
      loadCase(
        withConfig(ide.dir, (c) => {
          c.text_config.attention_bias = false;
        }),
      ),
      'cpu',
    );
    expect(noBias.logprobs.policy_max_abs_err).toBeGreaterThan(1e-3);
  }, 300_000);
  it('without the linear RoPE scaling the LLaVA case fails; its legacy keys and tied lm_head load', async () => {
    const llava = FIXTURE_CASES[1];
    const r = await checkModel(
      loadCase(
        withConfig(llava.dir, (c) => {
          c.text_config.rope_parameters = { rope_type: 'default', rope_theta: 1e6 };
        }),
      ),
      'cpu',
    );
    expect(r.logprobs.policy_max_abs_err).toBeGreaterThan(1e-3);
  }, 300_000);
});

describe('the model check fails when it should', () => {
  function mutated(mutate: (dir: string) => void): string {
    const dir = mkdtempSync(join(tmpdir(), 'vco-model-case-'));
    cpSync(PUBLIC_CASES[0].dir, dir, { recursive: true });
    mutate(dir);
    return dir;
  }

  it('a perturbed expected log-prob or gradient is caught', async () => {
    const dir = mutated((d) => {
      const f = join(d, 'case.json');
      const c = JSON.parse(readFileSync(f, 'utf8'));
      c.sequences[5].policy_token_logprobs[1] += 5e-4;
      writeFileSync(f, JSON.stringify(c));
    });
    const r = await checkModel(loadCase(dir), 'cpu');
    expect(r.logprobs.policy_max_abs_err).toBeGreaterThan(4e-4);
    expect(r.pass).toBe(false);
  }, 300_000);

  it('an adapter with another LoRA scale changes the log-probs and fails', async () => {
    const dir = mutated((d) => {
      const f = join(d, 'adapter', 'adapter_config.json');
      const c = JSON.parse(readFileSync(f, 'utf8'));
      c.lora_alpha *= 1.01;
      writeFileSync(f, JSON.stringify(c));
    });
    const r = await checkModel(loadCase(dir), 'cpu');
    expect(r.pass).toBe(false);
  }, 300_000);

  it('a model missing a tensor names the file, the tensor and its expected shape', async () => {
    const dir = mutated((d) => {
      const c = JSON.parse(readFileSync(join(d, 'model', 'config.json'), 'utf8'));
      c.text_config.intermediate_size = 100; // the file holds 96
      writeFileSync(join(d, 'model', 'config.json'), JSON.stringify(c));
    });
    await expect(checkModel(loadCase(dir), 'cpu')).rejects.toThrow(
      /model\.safetensors: tensor "model\.text_model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[96,48\], expected \[100,48\]/,
    );
  });
});

describe('int4 mode on a SmolVLM-256M-shaped model (random weights)', () => {
  it('moves per-token log-probs from float32 by a bounded amount, measured', async () => {
    const { benchInt4 } = await import('../../src/node/bench-int4.js');
    const r = await benchInt4();
    // measured 0.43 max / 0.14 mean nats per token on this machine (BENCHMARKS.md); random Gaussian weights
    // are int4's hard case (no outliers to spend the range on)
    expect(r.fp32_mean_logprob).toBeLessThan(-5);
    expect(r.mean_abs_dev).toBeGreaterThan(0);
    expect(r.mean_abs_dev).toBeLessThan(0.3);
    expect(r.max_abs_dev).toBeLessThan(1.0);
  }, 600_000);
});
