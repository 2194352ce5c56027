/**
 * `vco-lab bench train` (and `bench --quick`): scoring and training cost of one preference sample with
 * 48-token answers on random-weight models of real shapes, and, measured in the same run, what each saving
 * buys: packed vs naive scoring of the two-image contexts, cached vs recomputed image features, LoRA on the
 * top k layers vs all layers.
 */
import { performance } from 'node:perf_hooks';
import { Engine, type LoraSettings, savedBytes } from '../engine/engine.js';
import { type EngineSample, forwardSample } from '../engine/sample.js';
import { Trainer } from '../engine/trainer.js';
import { icvco } from '../loss/icvco.js';
import { randomCheckpoint } from '../model/random-checkpoint.js';
import { LLAVA_INTERLEAVE_05B, SMOLVLM_256M, shrink } from '../model/shapes.js';
import { type VlmSpec, prefixes } from '../model/vlm.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { EP } from '../runtime/runtime.js';

export interface TrainBenchRow {
  model: string;
  precision: 'fp32' | 'int4';
  /** policy + reference scores (8 + 8) of a new sample, its two images' features included */
  score_ms_per_sample: number;
  /** one optimizer step on one sample, reference scores cached (steady state) */
  train_ms_per_sample: number;
  tokens_per_sample: number;
  score_tokens_per_s: number;
  train_tokens_per_s: number;
  /** packed [prompt | y | y'] vs one pass per response, the two-image contexts, features cached */
  packed_vs_naive_speedup: number;
  /** scoring with per-image cached features vs recomputing the tower for every context */
  cached_vs_recomputed_features_speedup: number;
  /** a training step with LoRA on the top 4 LM layers vs on all of them */
  topk_vs_all_layers_speedup: number;
  peak_rss_mb: number;
  /** frozen weights resident in the runtime (int4 blocks as stored) */
  weights_mb: number;
  /** layer inputs a training step keeps between forward and backward (the sample's four contexts) */
  saved_activations_mb: number;
}

let word = 7;
const rnd = () => {
  word = (word * 1103515245 + 12345) % 2147483648;
  return word / 2147483648;
};

/**
 * A preference sample shaped like the paper's: a photo per image, a question, two 48-token answers that
 * differ in a few tokens. Idefics3 splits a photo as its processor does for a 1024-px image at
 * max_image_size 512: 2x2 tiles plus the global image, 5 x tokensPerImage tokens; LLaVA takes one 384-px image.
 */
export function syntheticSample(spec: VlmSpec, id: string, R = 48): EngineSample {
  const w = () => 100 + Math.floor(rnd() * Math.min(spec.text.vocab - 200, 20000));
  const tiles = spec.family === 'idefics3' ? 5 : 1;
  const img = () =>
    Array.from({ length: tiles }, () => Float32Array.from({ length: 3 * spec.vision.imageSize ** 2 }, () => rnd() * 2 - 1));
  const block = Array.from({ length: tiles }, () => [4, ...Array(spec.tokensPerImage).fill(spec.imageTokenId)]).flat();
  const q = Array.from({ length: 16 }, w),
    anchor = [w(), w(), w(), w(), w(), w()];
  const y = Array.from({ length: R - 1 }, w);
  const yp = y.slice();
  for (const i of [5, 17, 30]) yp[i] = w();
  const eos = 2;
  const single = [1, ...block, ...q, 3],
    multi = (a: number) => [1, ...block, ...block, ...q, ...anchor, a, 3];
  const mask = (a: number[], b: number[]) => [...a.map((t, i) => (t !== b[i] ? 1 : 0)), 0];
  return {
    id,
    images: { m: img(), "m'": img() },
    prompts: { m: single, "m'": single, 'M>m': multi(11), "M>m'": multi(12) },
    contextImages: { m: ['m'], "m'": ["m'"], 'M>m': ['m', "m'"], "M>m'": ['m', "m'"] },
    responses: { y: [...y, eos], "y'": [...yp, eos] },
    spanMasks: { y: mask(y, yp), "y'": mask(yp, y) },
    swap: false,
  };
}

const time = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};

export async function benchTrainModel(
  spec: VlmSpec,
  name: string,
  precision: 'fp32' | 'int4',
  ep: EP,
  o: { ratios?: boolean; train?: boolean; warm?: boolean; log?: (s: string) => void } = {},
): Promise<TrainBenchRow> {
  const log = o.log,
    ratios = o.ratios ?? true,
    doTrain = o.train ?? true,
    warm = o.warm ?? true;
  const rt = await createNodeRuntime(ep);
  const ckpt = randomCheckpoint(spec, 1);
  const lmTargets = `${prefixes(spec).text.replace(/\./g, '\\.')}\\.layers\\.\\d+\\.(self_attn\\.(q|k|v|o)_proj|mlp\\.(gate|up|down)_proj)`;
  const lora = (topK?: number): LoraSettings => ({ r: 16, alpha: 32, targets: lmTargets, topK });
  const reqs = icvco.requirements(icvco.defaults());
  const make = (topK?: number) => Engine.create(rt, spec, ckpt, { lora: lora(topK), int4: precision === 'int4', seed: 1 });
  const e = await make();
  const s1 = syntheticSample(spec, 's1');
  const tiles = s1.images.m.length + s1.images["m'"].length;
  // the tower: each of the sample's tiles once (then cached for every context, policy and reference)
  const tower = await time(async () => {
    await e.features(s1.images.m, 'reference');
    await e.features(s1.images["m'"], 'reference');
  });
  // a warm-up pass creates the LM sessions; skipped for the slowest shapes, where creating them is a small
  // part of a pass
  if (warm) {
    await forwardSample(e, s1, reqs, 'policy');
    await forwardSample(e, s1, reqs, 'reference');
  }
  let kept: Awaited<ReturnType<typeof forwardSample>> | undefined;
  const lm = await time(async () => {
    kept = await forwardSample(e, s1, reqs, 'policy', { save: true });
    await forwardSample(e, s1, reqs, 'reference');
  });
  const savedMb = Object.values(kept!.saved).reduce((a, sv) => a + savedBytes(sv!), 0) / 2 ** 20;
  const score = tower + lm;
  log?.(`${name} ${precision}: tower ${tower.toFixed(0)} ms for ${tiles} tiles, LM scoring ${lm.toFixed(0)} ms`);

  let packedVsNaive = NaN,
    cachedVsRecomputed = NaN,
    topkVsAll = NaN,
    train = NaN;
  if (ratios) {
    const ctx = { prompt: s1.prompts['M>m'], images: [...s1.images.m, ...s1.images["m'"]] };
    if (warm) await e.forward(ctx, [s1.responses.y], 'policy'); // the naive shape's sessions (|y| = |y'|: one shape)
    const naive = await time(async () => {
      await e.forward(ctx, [s1.responses.y], 'policy');
      await e.forward(ctx, [s1.responses["y'"]], 'policy');
    });
    const packed = await time(() => e.forward(ctx, [s1.responses.y, s1.responses["y'"]], 'policy'));
    packedVsNaive = naive / packed;
    // without the cache every context runs the tower on its images, for the policy and the reference
    const perContext = (['m', "m'", 'M>m', "M>m'"] as const).reduce(
      (a, c) => a + s1.contextImages[c].reduce((b, im) => b + s1.images[im].length, 0),
      0,
    );
    cachedVsRecomputed = (lm + 2 * perContext * (tower / tiles)) / score;
    log?.(`${name} ${precision}: packed ${packed.toFixed(0)} vs naive ${naive.toFixed(0)} ms (two-image context)`);
  }
  const cfg = {
    objective: 'icvco',
    optimizer: { lr: 5e-6, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0 },
    schedule: { kind: 'constant' as const, warmupSteps: 0, totalSteps: 10 },
    batchSize: 1,
    gradAccum: 1,
    maxGradNorm: 1,
    seed: 1,
    shuffle: false,
  };
  if (doTrain) {
    const t = new Trainer(e, [s1], cfg);
    if (warm) await t.step(); // backward sessions; reference scores cached
    train = await time(() => t.step());
    log?.(`${name} ${precision}: training step ${train.toFixed(0)} ms`);
    if (ratios) {
      const top = await make(4);
      top.adoptFeatureCache(e);
      const tt = new Trainer(top, [s1], cfg);
      await tt.step();
      const trainTop = await time(() => tt.step());
      topkVsAll = train / trainTop;
      log?.(`${name} ${precision}: top-4 training step ${trainTop.toFixed(0)} ms`);
      await top.release();
    }
  }
  const weightsMb = e.weightBytes / 2 ** 20;
  await e.release();
  const tokens =
    (['m', "m'", 'M>m', "M>m'"] as const).reduce((a, c) => a + 2 * s1.prompts[c].length, 0) +
    4 * (s1.responses.y.length + s1.responses["y'"].length);
  return {
    model: name,
    precision,
    score_ms_per_sample: score,
    train_ms_per_sample: train,
    tokens_per_sample: tokens,
    score_tokens_per_s: tokens / (score / 1000),
    train_tokens_per_s: tokens / (train / 1000),
    packed_vs_naive_speedup: packedVsNaive,
    cached_vs_recomputed_features_speedup: cachedVsRecomputed,
    topk_vs_all_layers_speedup: topkVsAll,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    weights_mb: weightsMb,
    saved_activations_mb: savedMb,
  };
}

export interface TrainBench {
  suite: 'train';
  ep: EP;
  quick: boolean;
  rows: TrainBenchRow[];
  /** the first row's naive time / packed time on the two-image contexts (the quick run's headline) */
  packed_vs_naive_speedup: number;
}

export async function benchTrain(
  o: { ep?: EP; quick?: boolean; models?: string[]; log?: (s: string) => void } = {},
): Promise<TrainBench> {
  const ep = o.ep ?? 'cpu';
  const rows: TrainBenchRow[] = [];
  const log = o.log;
  if (o.quick) {
    rows.push(
      await benchTrainModel(
        shrink(SMOLVLM_256M, { layers: 8, visionLayers: 2 }),
        'SmolVLM-256M-shaped (8 LM, 2 tower layers)',
        'fp32',
        ep,
        { ratios: true, train: false, log },
      ),
    );
  } else {
    const models = o.models ?? ['smolvlm', 'llava'];
    if (models.includes('smolvlm')) {
      rows.push(await benchTrainModel(SMOLVLM_256M, 'SmolVLM-256M-shaped', 'fp32', ep, { log }));
      rows.push(await benchTrainModel(SMOLVLM_256M, 'SmolVLM-256M-shaped', 'int4', ep, { ratios: false, warm: false, log }));
    }
    // on a CPU the 0.5B shape's training step alone takes minutes: scoring and the packing ratio only
    if (models.includes('llava')) {
      rows.push(
        await benchTrainModel(LLAVA_INTERLEAVE_05B, 'llava-interleave-0.5b-shaped', 'fp32', ep, {
          train: ep !== 'cpu',
          ratios: true,
          warm: ep !== 'cpu',
          log,
        }),
      );
    }
  }
  return { suite: 'train', ep, quick: !!o.quick, rows, packed_vs_naive_speedup: rows[0].packed_vs_naive_speedup };
}

export function formatTrainBench(b: TrainBench): string {
  const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const lines = [
    `bench train on ${b.ep}${b.quick ? ' (quick)' : ''}: one preference sample, 48-token answers, LoRA r=16 on every LM linear`,
    'model                                        prec  score ms  train ms  tokens  score tok/s  train tok/s  packed/naive  cached/recomp  top4/all  peak RSS MB  weights MB  saved MB',
  ];
  for (const r of b.rows) {
    lines.push(
      `${r.model.padEnd(44)} ${r.precision.padEnd(5)} ${f(r.score_ms_per_sample).padStart(8)} ${f(r.train_ms_per_sample).padStart(9)}` +
        ` ${String(r.tokens_per_sample).padStart(7)} ${f(r.score_tokens_per_s).padStart(12)} ${f(r.train_tokens_per_s).padStart(12)}` +
        ` ${f(r.packed_vs_naive_speedup, 2).padStart(13)} ${f(r.cached_vs_recomputed_features_speedup, 2).padStart(14)}` +
        ` ${f(r.topk_vs_all_layers_speedup, 2).padStart(9)} ${f(r.peak_rss_mb).padStart(12)} ${f(r.weights_mb).padStart(11)} ${f(r.saved_activations_mb).padStart(9)}`,
    );
  }
  return lines.join('\n');
}
