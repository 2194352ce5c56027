/**
 * The segmented engine against HF transformers + PEFT on the reference cases: packed scoring of every
 * sequence, packed == unpacked, and LoRA gradients through the layer-by-layer backward (tower included).
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { type SampleForward, backwardSample, forwardSample } from '../../src/engine/sample.js';
import { evaluate } from '../../src/loss/objective.js';
import { icvco } from '../../src/loss/icvco.js';
import type { SeqKey } from '../../src/loss/types.js';
import { readAdapter } from '../../src/model/peft.js';
import { checkConfig as specFromConfig } from '../../src/model/families/index.js';
import { SafetensorsFiles, loadCheckpointDir, readJson } from '../../src/node/load-dir.js';
import { caseEngineSamples, loadCase, presetConfig, sequenceKey } from '../../src/node/reference-case.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { PUBLIC_CASES, requireReference } from '../helpers.js';

let rt: Runtime;
beforeAll(async () => {
  requireReference();
  rt = await createNodeRuntime('cpu');
});

async function caseEngine(dir: string, o: { cacheFeatures?: boolean } = {}) {
  const ckpt = loadCheckpointDir(join(dir, 'model'));
  const spec = specFromConfig(ckpt.config);
  const adapter = readAdapter(
    readJson(join(dir, 'adapter', 'adapter_config.json'), ''),
    'adapter_config.json',
    new SafetensorsFiles(join(dir, 'adapter'), [join(dir, 'adapter', 'adapter_model.safetensors')]),
  );
  return Engine.create(rt, spec, ckpt, { lora: adapter, ...o });
}

describe('packed scoring and layer-by-layer gradients on the reference cases', () => {
  for (const { name, dir } of PUBLIC_CASES) {
    it(`${name}: token log-probs 1e-4, packed = unpacked 1e-5, LoRA gradients 1e-3`, async () => {
      const c = loadCase(dir);
      const e = await caseEngine(dir);
      const samples = caseEngineSamples(c);
      const cfg = presetConfig(c, 'paper');
      const reqs = icvco.requirements(cfg);
      const pol: SampleForward[] = [],
        ref: SampleForward[] = [];
      for (const s of samples) {
        pol.push(await forwardSample(e, s, reqs, 'policy', { save: true }));
        ref.push(await forwardSample(e, s, reqs, 'reference'));
      }
      let err = 0;
      for (const row of c.sequences) {
        const k = sequenceKey(row) as SeqKey;
        const p = pol[row.sample].tokens[k]!,
          r = ref[row.sample].tokens[k]!;
        row.policy_token_logprobs.forEach((x, t) => {
          err = Math.max(err, Math.abs(x - p[t]));
        });
        row.reference_token_logprobs.forEach((x, t) => {
          err = Math.max(err, Math.abs(x - r[t]));
        });
      }
      expect(err).toBeLessThan(1e-4);
      // features once per image: 2 images per sample, shared by single and two-image contexts, policy and reference
      if (!e.visionTrainable) expect(e.stats.visionRuns).toBe(2 * samples.length);

      const unpacked = await forwardSample(e, samples[1], reqs, 'policy', { packed: false });
      let pe = 0;
      for (const k of Object.keys(unpacked.tokens) as SeqKey[]) {
        unpacked.tokens[k]!.forEach((x, t) => {
          pe = Math.max(pe, Math.abs(x - pol[1].tokens[k]![t]));
        });
      }
      expect(pe).toBeLessThan(1e-5);

      const loss = evaluate(
        icvco,
        cfg,
        samples.map((s, i) => ({ policy: pol[i].scores, reference: ref[i].scores, swap: s.swap })),
      );
      expect(Math.abs(loss.loss - c.loss.paper.value) / c.loss.paper.value).toBeLessThan(1e-5);
      const grads = new Map<string, Float64Array>();
      for (let i = 0; i < samples.length; i++) await backwardSample(e, samples[i], reqs, pol[i], loss.grads[i], grads);
      const hf = new SafetensorsFiles(dir, [join(dir, 'lora_grads_paper.safetensors')]);
      let worst = 0;
      for (const key of hf.names()) {
        const exp = hf.get(key).data as Float64Array;
        const ours = grads.get(key.replace(/^base_model\.model\./, ''));
        const m = exp.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
        if (m === 0) {
          expect(ours?.every((x) => x === 0) ?? true, key).toBe(true);
          continue;
        }
        expect(ours, key).toBeDefined();
        exp.forEach((x, j) => {
          worst = Math.max(worst, Math.abs(x - ours![j]) / m);
        });
      }
      expect(worst).toBeLessThan(1e-3);
      await e.release();
    }, 600_000);
  }
});
