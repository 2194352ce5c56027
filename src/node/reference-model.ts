/**
 * `vco-lab reference <case>` without --loss-only: load the case's HF checkpoint and PEFT adapter into the
 * engine, and run the case through the very code that trains: each sample's contexts scored packed
 * (policy = adapter on, reference = adapter off), both presets' loss from the loss module, and the LoRA
 * gradients from the engine's backward pass seeded with dL/ds; all of it compared with what HF transformers
 * + PEFT computed in float64.
 */
import { join } from 'node:path';
import { Engine } from '../engine/engine.js';
import { type SampleForward, backwardSample, forwardSample } from '../engine/sample.js';
import { evaluate } from '../loss/objective.js';
import { icvco } from '../loss/icvco.js';
import type { SeqKey } from '../loss/types.js';
import { checkConfig } from '../model/families/index.js';
import type { EP } from '../runtime/runtime.js';
import { createNodeRuntime } from '../runtime/node.js';
import { SafetensorsFiles, loadCheckpointDir } from './load-dir.js';
import { readAdapterDir } from './model-dir.js';
import { type ReferenceCase, caseEngineSamples, presetConfig, sequenceKey } from './reference-case.js';

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

/**
 * one preset's loss and LoRA gradients (PEFT names, with or without base_model.model.) against the case's:
 * relative to each tensor's largest entry; exactly zero where HF's tensor is
 */
export function presetCheck(
  c: ReferenceCase,
  preset: 'paper' | 'reference-code',
  loss: number,
  grads: ReadonlyMap<string, ArrayLike<number>>,
): ModelPresetCheck {
  const exp = c.loss[preset].value;
  const relLoss = Math.abs(loss - exp) / Math.abs(exp);
  const hf = new SafetensorsFiles(c.dir, [join(c.dir, `lora_grads_${preset}.safetensors`)]);
  let worst = 0,
    worstName = '';
  const zeroNonzero: string[] = [];
  let zeros = 0;
  for (const key of hf.names()) {
    const want = hf.get(key).data as Float64Array;
    const ours = grads.get(key) ?? grads.get(key.replace(/^base_model\.model\./, ''));
    const maxRef = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    if (maxRef === 0) {
      zeros++;
      if (ours && Array.from(ours).some((x) => x !== 0)) zeroNonzero.push(key);
      continue;
    }
    let err = 0;
    for (let j = 0; j < want.length; j++) err = Math.max(err, Math.abs((ours?.[j] ?? 0) - want[j]));
    if (err / maxRef > worst) {
      worst = err / maxRef;
      worstName = key;
    }
  }
  return {
    loss: { value: loss, expected: exp, rel_err: relLoss },
    lora_grad_max_rel_err: worst,
    zero_tensors: zeros,
    zero_tensors_nonzero: zeroNonzero,
    worst_tensor: worstName,
    pass: relLoss <= MODEL_TOLERANCES.loss_rel && worst <= MODEL_TOLERANCES.lora_grad_rel && zeroNonzero.length === 0,
  };
}

export async function checkModel(c: ReferenceCase, device: EP = 'cpu', log?: (s: string) => void): Promise<ModelCheck> {
  const ckpt = loadCheckpointDir(join(c.dir, 'model'));
  const spec = checkConfig(ckpt.config, join(c.dir, 'model', 'config.json'));
  const rt = await createNodeRuntime(device);
  const engine = await Engine.create(rt, spec, ckpt, { lora: readAdapterDir(join(c.dir, 'adapter')) });
  const samples = caseEngineSamples(c);
  // every score either preset needs (both presets read the same sequences)
  const reqs = icvco.requirements(presetConfig(c, 'paper'));

  const pol: SampleForward[] = [],
    ref: SampleForward[] = [];
  for (let k = 0; k < samples.length; k++) {
    pol.push(await forwardSample(engine, samples[k], reqs, 'policy', { save: true }));
    ref.push(await forwardSample(engine, samples[k], reqs, 'reference'));
    log?.(`sample ${k + 1}/${samples.length}`);
  }
  let polErr = 0,
    refErr = 0;
  for (const row of c.sequences) {
    const key = sequenceKey(row) as SeqKey;
    const p = pol[row.sample].tokens[key],
      r = ref[row.sample].tokens[key];
    if (!p || !r) throw new Error(`${c.dir}/case.json: the engine did not score ${key} of sample ${row.sample}`);
    row.policy_token_logprobs.forEach((x, t) => {
      polErr = Math.max(polErr, Math.abs(p[t] - x));
    });
    row.reference_token_logprobs.forEach((x, t) => {
      refErr = Math.max(refErr, Math.abs(r[t] - x));
    });
  }
  const scores = samples.map((s, k) => ({ policy: pol[k].scores, reference: ref[k].scores, swap: s.swap }));

  const presets = {} as ModelCheck['presets'];
  for (const preset of ['paper', 'reference-code'] as const) {
    const res = evaluate(icvco, presetConfig(c, preset), scores);
    // the trainer's backward pass: each context seeded with (dL/ds)·mask, gradients summed over the batch
    const total = new Map<string, Float64Array>();
    for (let k = 0; k < samples.length; k++) await backwardSample(engine, samples[k], reqs, pol[k], res.grads[k], total);
    presets[preset] = presetCheck(c, preset, res.loss, total);
  }
  await engine.release();
  return modelCheckReport(c, presets, polErr, refErr, MODEL_TOLERANCES.logprob_abs[device] ?? 1e-3, {
    device,
    runtime: rt.detail,
  });
}

/** a case's report from its presets' checks and its token log-prob errors (every backend's `reference` shares it) */
export function modelCheckReport(
  c: ReferenceCase,
  presets: ModelCheck['presets'],
  polErr: number,
  refErr: number,
  tolLp: number,
  where: { device: ModelCheck['device']; runtime: string },
): ModelCheck {
  const both = [presets.paper, presets['reference-code']];
  const lpErr = Math.max(polErr, refErr);
  return {
    case: c.dir,
    family: c.family,
    mode: 'model',
    device: where.device,
    runtime: where.runtime,
    sequences: c.sequences.length,
    logprobs: { policy_max_abs_err: polErr, reference_max_abs_err: refErr },
    presets,
    max_errors: {
      logprob_abs: lpErr,
      loss_rel: Math.max(...both.map((p) => p.loss.rel_err)),
      lora_grad_rel: Math.max(...both.map((p) => p.lora_grad_max_rel_err)),
    },
    tolerances: { logprob_abs: tolLp, loss_rel: MODEL_TOLERANCES.loss_rel, lora_grad_rel: MODEL_TOLERANCES.lora_grad_rel },
    pass: lpErr <= tolLp && both.every((p) => p.pass),
  };
}
