/**
 * `vco-lab bench int4`: how far the int4 mode (frozen linears of the tower and the LM as MatMulNBits blocks)
 * moves the per-token log-probs from float32, on a SmolVLM-256M-shaped model with random weights.
 */
import { performance } from 'node:perf_hooks';
import { Engine, type ScoreRow } from '../engine/engine.js';
import { randomCheckpoint } from '../model/random-checkpoint.js';
import { SMOLVLM_256M } from '../model/shapes.js';
import type { VlmSpec } from '../model/vlm.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { EP } from '../runtime/runtime.js';

export interface Int4Bench {
  suite: 'int4';
  model: string;
  ep: EP;
  response_tokens: number;
  /** over the response tokens: |log p_int4 - log p_fp32| */
  max_abs_dev: number;
  mean_abs_dev: number;
  /** |Σ_t log p_int4 - Σ_t log p_fp32| for the whole response: what a sequence score moves */
  sequence_score_dev: number;
  fp32_mean_logprob: number;
  fp32_ms: number;
  int4_ms: number;
}

/** one image (with Idefics3's markers), a short question and a response of `R` tokens */
export function benchSequence(spec: VlmSpec, R: number, seed = 1): ScoreRow {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const word = () => 100 + Math.floor(rnd() * Math.min(spec.text.vocab - 200, 20000));
  const imageBlock = Array(spec.tokensPerImage).fill(spec.imageTokenId);
  const prompt = [1, ...Array.from({ length: 6 }, word), ...imageBlock, ...Array.from({ length: 12 }, word), 2];
  const response = Array.from({ length: R }, word);
  const px = new Float32Array(3 * spec.vision.imageSize ** 2);
  for (let i = 0; i < px.length; i++) px[i] = rnd() * 2 - 1;
  return { prompt, images: [px], responses: [response] };
}

export async function benchInt4(o: { ep?: EP; spec?: VlmSpec; name?: string; R?: number } = {}): Promise<Int4Bench> {
  const ep = o.ep ?? 'cpu',
    spec = o.spec ?? SMOLVLM_256M,
    R = o.R ?? 48;
  const rt = await createNodeRuntime(ep);
  const ckpt = randomCheckpoint(spec, 1);
  const seq = benchSequence(spec, R);
  const run = async (int4: boolean) => {
    // features not cached: the timed pass runs the whole model, tower included
    const engine = await Engine.create(rt, spec, ckpt, { int4, cacheFeatures: false });
    await engine.forwardBatch([seq], 'reference'); // session creation and warm-up
    const t = performance.now();
    const lp = (await engine.forwardBatch([seq], 'reference')).logprobs[0][0];
    const ms = performance.now() - t;
    await engine.release();
    return { lp, ms };
  };
  const fp = await run(false);
  const q = await run(true);
  let max = 0,
    sum = 0,
    sf = 0,
    sq = 0,
    mean = 0;
  for (let i = 0; i < R; i++) {
    const d = Math.abs(fp.lp[i] - q.lp[i]);
    max = Math.max(max, d);
    sum += d;
    sf += fp.lp[i];
    sq += q.lp[i];
    mean += fp.lp[i] / R;
  }
  return {
    suite: 'int4',
    model: o.name ?? 'SmolVLM-256M-shaped (random weights)',
    ep,
    response_tokens: R,
    max_abs_dev: max,
    mean_abs_dev: sum / R,
    sequence_score_dev: Math.abs(sf - sq),
    fp32_mean_logprob: mean,
    fp32_ms: fp.ms,
    int4_ms: q.ms,
  };
}
