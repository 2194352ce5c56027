/**
 * The paper's comparison at toy scale (`vco-lab toy-paper`): LoRA preference training of the default model
 * with DPO, image-swap visual DPO (the S-VCO-style image-contrast pair) and IC-VCO, each on edited and on
 * synthetic negatives of the same seed tuples, with the same budget; the ShapesWorld benchmark before and
 * after, and the training reward accuracies (the paper's Figure 4a: edited pairs are harder to separate).
 */
import { cpus } from 'node:os';
import { makePreferenceSample, syntheticNegative } from '../data/edits.js';
import { render } from '../data/raster.js';
import { rng } from '../data/world.js';
import { Engine } from '../engine/engine.js';
import { type EngineSample, engineSample } from '../engine/sample.js';
import { Trainer } from '../engine/trainer.js';
import { shapesBenchmark } from '../eval/shapesworld.js';
import { type BenchmarkResult, type CategoryMetrics, benchmarkMetrics, yesNoMargins } from '../eval/yesno.js';
import type { Runtime } from '../runtime/runtime.js';
import { loadCheckpointDir } from './load-dir.js';
import { type LoadedModel, loadModelDir } from './model-dir.js';

export const TOY_OBJECTIVES = [
  { id: 'dpo', label: 'DPO', accuracy: 'rewards/accuracies' },
  { id: 'visdpo', label: 'visual DPO (image swap)', accuracy: 'rewards/accuracies' },
  { id: 'icvco:paper', label: 'IC-VCO', accuracy: 'multi_rewards/accuracies' },
] as const;

export interface ToyOptions {
  modelDir: string;
  pairs: number;
  steps: number;
  batch: number;
  lr: number;
  rank: number;
  perCategory: number;
  seed: number;
  /** probability that a star in a training pair is yellow (lower: more pairs about the planted prior) */
  starYellow: number;
  objectives?: string[];
  log?: (s: string) => void;
}

export const DEFAULT_TOY: Omit<ToyOptions, 'modelDir'> = {
  pairs: 256,
  steps: 64,
  batch: 8,
  lr: 2e-3,
  rank: 8,
  perCategory: 200,
  seed: 7,
  starYellow: 0.5,
};

export interface ToyRun {
  objective: string;
  negatives: 'edited' | 'synthetic';
  /** the objective's reward accuracy (TRL name in `accuracy_metric`) over the first and last quarter of steps */
  accuracy_metric: string;
  reward_accuracy_first: number;
  reward_accuracy_last: number;
  loss_first: number;
  loss_last: number;
  benchmark: Record<string, CategoryMetrics>;
  seconds: number;
}

export interface ToyResult {
  machine: string;
  options: Omit<ToyOptions, 'log'>;
  image_ssim: { edited: number; synthetic: number };
  before: BenchmarkResult['categories'];
  runs: ToyRun[];
}

const LM_LINEARS = String.raw`model\.text_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)`;

/** training pairs of one kind: the same seed tuples, m' edited or re-generated */
export function toySamples(
  model: LoadedModel,
  o: Pick<ToyOptions, 'pairs' | 'seed' | 'starYellow'>,
  negatives: 'edited' | 'synthetic',
): EngineSample[] {
  const out: EngineSample[] = [];
  for (let i = 0; i < o.pairs; i++) {
    const s = makePreferenceSample(o.seed * 100003 + i, { starYellow: o.starYellow });
    const mPrime = negatives === 'edited' ? s.mPrime : syntheticNegative(s, rng(o.seed * 7919 + i));
    const text = {
      question: s.prompt,
      chosen: s.chosen,
      rejected: s.rejected,
      chosenSpans: s.chosenSpans,
      rejectedSpans: s.rejectedSpans,
      swap: i % 2 === 1,
    };
    out.push(
      engineSample(
        `${negatives}-${s.id}`,
        text,
        { m: model.processor.process(render(s.m)), "m'": model.processor.process(render(mPrime)) },
        model.tokenizer,
      ),
    );
  }
  return out;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export async function toyPaper(rt: Runtime, o: ToyOptions): Promise<ToyResult> {
  const log = o.log ?? (() => {});
  const base = await loadModelDir(rt, o.modelDir);
  const items = shapesBenchmark(o.perCategory);
  const bench = async (m: LoadedModel) => benchmarkMetrics(m.name, items, await yesNoMargins(m.engine, m, items)).categories;
  const before = await bench(base);
  const accs = (b: Record<string, CategoryMetrics>) =>
    Object.entries(b)
      .map(([k, v]) => `${k} ${(100 * v.accuracy).toFixed(1)}%`)
      .join(', ');
  log(`before training: ${accs(before)}`);
  const { similarityReport } = await import('../data/similarity.js');
  const sim = similarityReport(64, o.seed);
  const runs: ToyRun[] = [];
  const objectives = TOY_OBJECTIVES.filter((x) => !o.objectives || o.objectives.includes(x.id));
  for (const negatives of ['edited', 'synthetic'] as const) {
    const samples = toySamples(base, o, negatives);
    for (const obj of objectives) {
      const t0 = performance.now();
      const engine = await Engine.create(rt, base.spec, loadCheckpointDir(o.modelDir), {
        lora: { r: o.rank, alpha: 2 * o.rank, targets: LM_LINEARS },
        seed: o.seed,
      });
      engine.adoptFeatureCache(base.engine);
      const trainer = new Trainer(engine, samples, {
        objective: obj.id,
        optimizer: { lr: o.lr, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
        schedule: { kind: 'cosine', warmupSteps: Math.ceil(o.steps / 10), totalSteps: o.steps },
        batchSize: o.batch,
        gradAccum: 1,
        maxGradNorm: 1,
        seed: o.seed,
        shuffle: true,
      });
      const acc: number[] = [],
        loss: number[] = [];
      for (let s = 0; s < o.steps; s++) {
        const st = await trainer.step();
        acc.push(st.metrics[obj.accuracy] ?? NaN);
        loss.push(st.loss);
        if ((s + 1) % 10 === 0)
          log(`${negatives} ${obj.id} step ${s + 1}/${o.steps} loss ${st.loss.toFixed(4)} ${obj.accuracy} ${acc[s].toFixed(2)}`);
      }
      const q = Math.max(1, Math.floor(o.steps / 4));
      const benchmark = await bench({ ...base, name: `${obj.id} on ${negatives}`, engine });
      runs.push({
        objective: obj.id,
        negatives,
        accuracy_metric: obj.accuracy,
        reward_accuracy_first: mean(acc.slice(0, q)),
        reward_accuracy_last: mean(acc.slice(-q)),
        loss_first: mean(loss.slice(0, q)),
        loss_last: mean(loss.slice(-q)),
        benchmark,
        seconds: (performance.now() - t0) / 1000,
      });
      log(`${obj.id} on ${negatives} negatives: ${accs(benchmark)} (${runs[runs.length - 1].seconds.toFixed(0)} s)`);
      await engine.release();
    }
  }
  await base.engine.release();
  const { log: _l, ...options } = o;
  return {
    machine: `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`,
    options,
    image_ssim: { edited: sim.edited.mean, synthetic: sim.synthetic.mean },
    before,
    runs,
  };
}

export function formatToy(r: ToyResult): string {
  const pct = (x: number) => (100 * x).toFixed(1).padStart(5);
  const cats = Object.keys(r.before);
  const head = `run                          reward acc first→last   ${cats.map((c) => c.padStart(9)).join(' ')}`;
  const row = (name: string, first: string, b: Record<string, CategoryMetrics>) =>
    `${name.padEnd(28)} ${first.padEnd(23)} ${cats.map((c) => `${pct(b[c].accuracy)}%`.padStart(9)).join(' ')}`;
  const lines = [head, row('before training', '', r.before)];
  for (const x of r.runs)
    lines.push(
      row(`${x.objective} / ${x.negatives}`, `${pct(x.reward_accuracy_first)}% → ${pct(x.reward_accuracy_last)}%`, x.benchmark),
    );
  lines.push('', `image SSIM (m, m'): edited ${r.image_ssim.edited.toFixed(3)}, synthetic ${r.image_ssim.synthetic.toFixed(3)}`);
  return `${lines.join('\n')}\n`;
}
