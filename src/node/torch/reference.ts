/**
 * `vco-lab reference <case> --backend torch`: the case's HF checkpoint and PEFT adapter in a PyTorch worker
 * (transformers + PEFT, float32 by default), scored sequence by sequence; the loss and dL/ds from the loss
 * module here; the worker back-propagates Σ (dL/ds)·mask·log p and returns the LoRA gradients. Compared with the
 * case exactly as the engine's path is (reference-model.ts), so both backends answer to the same references.
 */
import { join } from 'node:path';
import { evaluate } from '../../loss/objective.js';
import { icvco } from '../../loss/icvco.js';
import { MODEL_TOLERANCES, type ModelCheck, modelCheckReport, presetCheck } from '../reference-model.js';
import { type ReferenceCase, caseScores, presetConfig, sequenceKey } from '../reference-case.js';
import { type B64Array, TorchWorkers, fromB64, toB64 } from './workers.js';

export async function checkModelTorch(
  c: ReferenceCase,
  o: { dtype?: 'float32' | 'float64'; log?: (s: string) => void; workers?: TorchWorkers } = {},
): Promise<ModelCheck> {
  // a worker may be reused across cases (starting Python and importing transformers takes seconds)
  const w = o.workers ?? (await TorchWorkers.start());
  try {
    const loaded = await w.request<{ lora: Array<{ name: string }> }>(0, 'load', {
      model: join(c.dir, 'model'),
      adapter: join(c.dir, 'adapter'),
      dtype: o.dtype ?? 'float32',
    });
    o.log?.(`loaded ${loaded.lora.length} LoRA tensors`);
    const pixels = (k: number, name: string) => {
      const s = c.samples[k];
      const data = Float32Array.from((name === 'm' ? s.m : s.m_contrast) ?? []);
      const size = c.imageSize ?? Math.round(Math.sqrt(data.length / 3));
      return { pixels: toB64(data, [3, size, size]) };
    };
    const rows = c.sequences.map((s) => ({
      ids: s.input_ids,
      response_start: s.response_start,
      images: s.images.map((name) => pixels(s.sample, name)),
    }));
    const lps = async (which: 'policy' | 'reference', keep?: string) =>
      (await w.request<{ logprobs: B64Array[] }>(0, 'forward', { rows, which, keep })).logprobs.map((a) =>
        Array.from(fromB64(a)),
      );
    const ref = await lps('reference');
    const pol = await lps('policy');
    let polErr = 0,
      refErr = 0;
    c.sequences.forEach((s, i) => {
      s.policy_token_logprobs.forEach((x, t) => (polErr = Math.max(polErr, Math.abs(pol[i][t] - x))));
      s.reference_token_logprobs.forEach((x, t) => (refErr = Math.max(refErr, Math.abs(ref[i][t] - x))));
    });
    const scores = caseScores(c, (i) => ({ policy: pol[i], reference: ref[i] }));
    const presets = {} as ModelCheck['presets'];
    for (const preset of ['paper', 'reference-code'] as const) {
      const res = evaluate(icvco, presetConfig(c, preset), scores);
      await w.request(0, 'zero_grad');
      await lps('policy', preset);
      // each row's token weights: dL/ds of its sequence score, times the score's mask
      const weights = c.sequences.map((s) => {
        const g = res.grads[s.sample][sequenceKey(s)] ?? 0;
        return toB64(
          Float64Array.from(s.score_mask, (m) => m * g),
          [s.score_mask.length],
        );
      });
      await w.request(0, 'backward', { handle: preset, weights });
      const { grads } = await w.request<{ grads: Record<string, B64Array> }>(0, 'grads');
      const total = new Map(Object.entries(grads).map(([k, v]) => [k, fromB64(v)]));
      presets[preset] = presetCheck(c, preset, res.loss, total);
    }
    return modelCheckReport(c, presets, polErr, refErr, MODEL_TOLERANCES.logprob_abs.cpu, {
      device: 'cpu',
      runtime: `PyTorch worker (transformers + PEFT, ${o.dtype ?? 'float32'})`,
    });
  } finally {
    if (!o.workers) await w.close();
  }
}
