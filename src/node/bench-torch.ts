/**
 * `vco-lab bench train --backend torch`: the PyTorch backend (transformers + PEFT in a worker process, loss in
 * Node) against the ORT engine on the same model folder, the same preference sample and the same LoRA targets,
 * in one run: scoring one sample (policy and reference, every sequence IC-VCO needs) and one training step
 * (batch 1), medians of warm repeats; and the loss round trip's share of a torch step (the transport of scores
 * and weights between the processes, and the loss module itself, over the step's wall time).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { shapesworldSet } from '../data/sets.js';
import { shapesworldSamples } from '../engine/datasets.js';
import type { EngineSample } from '../engine/sample.js';
import { type TrainBackend, Trainer, engineBackend } from '../engine/trainer.js';
import { icvco } from '../loss/icvco.js';
import { evaluate } from '../loss/objective.js';
import { createNodeRuntime } from '../runtime/node.js';
import { syntheticSample } from './bench-train.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from './model-dir.js';
import { writeRandomSmolvlm256 } from './random-model-dir.js';
import { torchBackend } from './torch/backend.js';
import { TorchWorkers } from './torch/workers.js';

export interface TorchBenchRow {
  model: string;
  ort_score_s: number;
  torch_score_s: number;
  ort_step_s: number;
  torch_step_s: number;
  /** torch time / ORT time */
  torch_over_ort_score: number;
  torch_over_ort_step: number;
  /** share of a torch step spent moving scores and weights between Node and the worker, and in the loss module */
  loss_round_trip_share: number;
}

export interface TorchBench {
  suite: 'train-torch';
  machine: string;
  rows: TorchBenchRow[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const seconds = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
};

const LM_LINEARS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const CONFIG = {
  objective: 'icvco:paper',
  optimizer: { lr: 1e-4, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0 },
  schedule: { kind: 'constant' as const, warmupSteps: 0, totalSteps: 100 },
  batchSize: 1,
  gradAccum: 1,
  maxGradNorm: 1,
  seed: 1,
  shuffle: false,
};

async function measure(
  backend: TrainBackend,
  samples: EngineSample[],
  repeats: number,
): Promise<{ score: number; step: number }> {
  const reqs = icvco.requirements(icvco.defaults());
  const score: number[] = [],
    step: number[] = [];
  const t = new Trainer(backend, samples, CONFIG);
  await t.step(); // warm: sessions, caches, the reference scores
  for (let i = 0; i < repeats; i++) {
    score.push(
      await seconds(async () => {
        await backend.score([samples[0]], reqs, 'policy', false);
        await backend.score([samples[0]], reqs, 'reference', false);
      }),
    );
    step.push(await seconds(() => t.step()));
  }
  return { score: median(score), step: median(step) };
}

async function row(
  name: string,
  dir: string,
  samples: (m: Awaited<ReturnType<typeof loadModelDir>>) => EngineSample[],
  repeats: number,
  log?: (s: string) => void,
): Promise<TorchBenchRow> {
  const rt = await createNodeRuntime('cpu');
  const m = await loadModelDir(rt, dir);
  // names match as dotted suffixes in both backends (PEFT's rule), so the same modules carry LoRA
  await m.engine.setAdapter({ r: 16, alpha: 32, targets: LM_LINEARS }, 1);
  const ss = samples(m);
  log?.(`${name}: the ORT engine`);
  const ort = await measure(engineBackend(m.engine), ss, repeats);
  await m.engine.release();
  log?.(`${name}: the PyTorch worker`);
  const w = await TorchWorkers.start();
  try {
    await w.request(0, 'load', { model: dir, lora: { r: 16, alpha: 32, target_modules: LM_LINEARS }, dtype: 'float32', seed: 1 });
    const backend = torchBackend(w);
    const t0 = { ...w.timing };
    const tor = await measure(backend, ss, repeats);
    // the round trip: transport (request wall time minus the worker's own time) and the loss module
    const transport = w.timing.wall - t0.wall - (w.timing.compute - t0.compute);
    const reqs = icvco.requirements(icvco.defaults());
    const fwd = await backend.score([ss[0]], reqs, 'policy', false);
    const lossS = await seconds(async () => {
      for (let i = 0; i < 100; i++)
        evaluate(icvco, icvco.defaults(), [{ policy: fwd.scores[0], reference: fwd.scores[0], swap: false }]);
    });
    const stepsMeasured = repeats * 2 + 1; // warm step + repeats (each with a scoring pass and a step)
    const share = (transport / stepsMeasured + lossS / 100) / tor.step;
    return {
      model: name,
      ort_score_s: ort.score,
      torch_score_s: tor.score,
      ort_step_s: ort.step,
      torch_step_s: tor.step,
      torch_over_ort_score: tor.score / ort.score,
      torch_over_ort_step: tor.step / ort.step,
      loss_round_trip_share: share,
    };
  } finally {
    await w.close();
  }
}

export async function benchTorch(o: { quick?: boolean; log?: (s: string) => void } = {}): Promise<TorchBench> {
  const rows: TorchBenchRow[] = [];
  rows.push(
    await row(
      'shapesworld-tiny (default model)',
      DEFAULT_MODEL_DIR,
      (m) => shapesworldSamples(m, shapesworldSet({ pairs: 2, seed: 3 })),
      3,
      o.log,
    ),
  );
  if (!o.quick) {
    const dir = mkdtempSync(join(tmpdir(), 'vco-smolvlm256-'));
    try {
      writeRandomSmolvlm256(dir);
      rows.push(
        await row(
          'SmolVLM-256M-shaped (random weights)',
          dir,
          (m) => [syntheticSample(m.spec, 's1'), syntheticSample(m.spec, 's2')],
          1,
          o.log,
        ),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { suite: 'train-torch', machine: `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`, rows };
}

export function formatTorchBench(r: TorchBench): string {
  const lines = [`bench train --backend torch on ${r.machine} (CPU; LoRA r 16 on every LM linear; IC-VCO; batch 1)`];
  lines.push(
    'model                                  score s: ort / torch   ratio   step s: ort / torch   ratio   loss round trip',
  );
  for (const x of r.rows)
    lines.push(
      `${x.model.padEnd(38)} ${x.ort_score_s.toFixed(2).padStart(8)} / ${x.torch_score_s.toFixed(2).padEnd(8)} ${x.torch_over_ort_score.toFixed(2).padStart(5)}   ` +
        `${x.ort_step_s.toFixed(2).padStart(8)} / ${x.torch_step_s.toFixed(2).padEnd(8)} ${x.torch_over_ort_step.toFixed(2).padStart(5)}   ${(100 * x.loss_round_trip_share).toFixed(2)}% of a step`,
    );
  return `${lines.join('\n')}\n`;
}
