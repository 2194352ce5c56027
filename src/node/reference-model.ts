/**
 * `vco-lab reference <case>` without --loss-only: load the case's HF checkpoint and PEFT adapter, run every
 * sequence through the project's own graphs (policy = adapter on, reference = adapter off), compute both
 * presets' loss from those log-probs and the LoRA gradients through the backward graphs, and compare all of
 * it with what HF transformers + PEFT computed in float64.
 */
import { join } from 'node:path';
import { evaluate } from '../loss/objective.js';
import { icvco } from '../loss/icvco.js';
import type { SeqKey } from '../loss/types.js';
import { readAdapter } from '../model/peft.js';
import { VlmScorer, type ScoreSequence } from '../model/scorer.js';
import { specFromConfig } from '../model/spec.js';
import type { EP } from '../runtime/runtime.js';
import { createNodeRuntime } from '../runtime/node.js';
import { SafetensorsFiles, loadCheckpointDir, readJson } from './load-dir.js';
import { type ReferenceCase, caseScores, presetConfig, sequenceKey } from './reference-case.js';

export const MODEL_TOLERANCES = {
  logprob_abs: { cpu: 1e-4, webgpu: 1e-3 } as Record<string, number>,
  loss_rel: 1e-5,
  lora_grad_rel: 1e-3,
};

export interface ModelPresetCheck {
  loss: { value: number; expected: number; rel_err: number };
  /** max over LoRA tensors of max|ours - HF| / max|HF| */
  lora_grad_max_rel_err: number;
  /** tensors whose HF gradient is all zeros (e.g. a vision layer past vision_feature_layer) must be exactly zero */
  zero_tensors: number;
  zero_tensors_nonzero: string[];
  worst_tensor: string;
  pass: boolean;
}

export interface ModelCheck {
  case: string;
  family: string;
  mode: 'model';
  device: EP;
  runtime: string;
  sequences: number;
  logprobs: { policy_max_abs_err: number; reference_max_abs_err: number };
  presets: Record<'paper' | 'reference-code', ModelPresetCheck>;
  max_errors: { logprob_abs: number; loss_rel: number; lora_grad_rel: number };
  tolerances: { logprob_abs: number; loss_rel: number; lora_grad_rel: number };
  pass: boolean;
}

function caseSequences(c: ReferenceCase): ScoreSequence[] {
  return c.sequences.map((s, i) => {
    const sample = c.samples[s.sample];
    const images = s.images.map((which) => {
      const px = which === 'm' ? sample.m : which === 'm_contrast' ? sample.m_contrast : undefined;
      if (!px) throw new Error(`${c.dir}/case.json: sequences[${i}] needs image "${which}" of sample ${s.sample}, which has no pixels`);
      return Float32Array.from(px);
    });
    return { inputIds: s.input_ids, images, responseStart: s.response_start };
  });
}

export async function checkModel(c: ReferenceCase, device: EP = 'cpu', log?: (s: string) => void): Promise<ModelCheck> {
  const ckpt = loadCheckpointDir(join(c.dir, 'model'));
  const spec = specFromConfig(ckpt.config, join(c.dir, 'model', 'config.json'));
  const adir = join(c.dir, 'adapter');
  const adapter = readAdapter(readJson(join(adir, 'adapter_config.json'), 'a PEFT adapter folder holds adapter_config.json'),
    join(adir, 'adapter_config.json'), new SafetensorsFiles(adir, [join(adir, 'adapter_model.safetensors')]));
  const rt = await createNodeRuntime(device);
  const scorer = await VlmScorer.create(rt, spec, ckpt, adapter);
  const seqs = caseSequences(c);

  // log-probs, and J_i = d s_i / d(LoRA) for each sequence once: each preset's gradient is Σ_i (dL/ds_i)·J_i
  const pol: Float32Array[] = [], ref: Float32Array[] = [], jac: Array<Map<string, Float32Array>> = [];
  let polErr = 0, refErr = 0;
  for (let i = 0; i < seqs.length; i++) {
    const s = c.sequences[i];
    const mask = Float32Array.from(s.score_mask);
    const { logprobs, grads } = await scorer.grads(seqs[i], mask);
    const r = await scorer.logprobs(seqs[i], 'reference');
    pol.push(logprobs); ref.push(r); jac.push(grads);
    for (let t = 0; t < logprobs.length; t++) {
      polErr = Math.max(polErr, Math.abs(logprobs[t] - s.policy_token_logprobs[t]));
      refErr = Math.max(refErr, Math.abs(r[t] - s.reference_token_logprobs[t]));
    }
    log?.(`sequence ${i + 1}/${seqs.length}`);
  }
  const scores = caseScores(c, (i) => ({ policy: Array.from(pol[i]), reference: Array.from(ref[i]) }));

  const presets = {} as ModelCheck['presets'];
  for (const preset of ['paper', 'reference-code'] as const) {
    const res = evaluate(icvco, presetConfig(c, preset), scores);
    const exp = c.loss[preset].value;
    const relLoss = Math.abs(res.loss - exp) / Math.abs(exp);
    const total = new Map<string, Float64Array>();
    c.sequences.forEach((s, i) => {
      const w = res.grads[s.sample][sequenceKey(s) as SeqKey] ?? 0;
      for (const [k, g] of jac[i]) {
        let acc = total.get(k);
        if (!acc) { acc = new Float64Array(g.length); total.set(k, acc); }
        for (let j = 0; j < g.length; j++) acc[j] += w * g[j];
      }
    });
    const hf = new SafetensorsFiles(c.dir, [join(c.dir, `lora_grads_${preset}.safetensors`)]);
    let worst = 0, worstName = '';
    const zeroNonzero: string[] = [];
    let zeros = 0;
    for (const key of hf.names()) {
      const exp = hf.get(key).data as Float64Array;
      const ours = total.get(key.replace(/^base_model\.model\./, ''));
      const maxRef = exp.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      if (maxRef === 0) {
        zeros++;
        if (ours && ours.some((x) => x !== 0)) zeroNonzero.push(key);
        continue;
      }
      let err = 0;
      for (let j = 0; j < exp.length; j++) err = Math.max(err, Math.abs((ours?.[j] ?? 0) - exp[j]));
      if (err / maxRef > worst) { worst = err / maxRef; worstName = key; }
    }
    presets[preset] = {
      loss: { value: res.loss, expected: exp, rel_err: relLoss }, lora_grad_max_rel_err: worst, zero_tensors: zeros,
      zero_tensors_nonzero: zeroNonzero, worst_tensor: worstName,
      pass: relLoss <= MODEL_TOLERANCES.loss_rel && worst <= MODEL_TOLERANCES.lora_grad_rel && zeroNonzero.length === 0,
    };
  }
  await scorer.release();
  const tolLp = MODEL_TOLERANCES.logprob_abs[device] ?? 1e-3;
  const both = [presets.paper, presets['reference-code']];
  const lpErr = Math.max(polErr, refErr);
  return {
    case: c.dir, family: c.family, mode: 'model', device, runtime: rt.detail, sequences: seqs.length,
    logprobs: { policy_max_abs_err: polErr, reference_max_abs_err: refErr },
    presets,
    max_errors: { logprob_abs: lpErr, loss_rel: Math.max(...both.map((p) => p.loss.rel_err)),
      lora_grad_rel: Math.max(...both.map((p) => p.lora_grad_max_rel_err)) },
    tolerances: { logprob_abs: tolLp, loss_rel: MODEL_TOLERANCES.loss_rel, lora_grad_rel: MODEL_TOLERANCES.lora_grad_rel },
    pass: lpErr <= tolLp && both.every((p) => p.pass),
  };
}
