/**
 * LoRA preference training, one readable loop (in the spirit of nanoGPT's train.py):
 *   for each micro-batch: reference scores (cached per sample) and policy scores (packed, activations saved)
 *   -> the loss module gives the loss and w_i = dL/ds_i -> one backward of Σ w_i·s_i per context, layer by
 *   layer -> gradients summed over `gradAccum` micro-batches (each divided by gradAccum, as HF Trainer)
 *   -> clip -> AdamW at the scheduled learning rate -> new LoRA uploaded.
 * Everything that makes a run repeatable is in TrainState: step, optimizer moments, the data order and
 * position, the RNG; a checkpoint holds it with the adapter, and resuming continues the same run.
 */
import { resolveObjective } from '../loss/registry.js';
import { mulberry32 } from '../util/prng.js';
import { evaluate } from '../loss/objective.js';
import {
  type LossResult,
  type PreferenceScores,
  ScoreInputError,
  type SequenceRequirement,
  type SequenceScores,
} from '../loss/types.js';
import type { Engine } from './engine.js';
import { type AdamWConfig, type AdamWState, type Schedule, adamwStep, clipGradNorm, lrFactor, newAdamWState } from './optim.js';
import { addGradients } from './grads.js';
import { type EngineSample, type SampleForward, backwardSample, forwardSample } from './sample.js';

export interface TrainConfig {
  /** objective id, e.g. 'icvco', 'icvco:reference-code', 'dpo' */
  objective: string;
  objectiveSettings?: Record<string, unknown>;
  optimizer: AdamWConfig;
  schedule: Schedule;
  /** preference samples per micro-batch (the loss module's batch) */
  batchSize: number;
  gradAccum: number;
  /** null: no clipping */
  maxGradNorm: number | null;
  seed: number;
  /** shuffle the data each epoch */
  shuffle: boolean;
}

export const DEFAULT_TRAIN: Omit<TrainConfig, 'schedule'> = {
  objective: 'icvco',
  optimizer: { lr: 5e-6, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
  batchSize: 1,
  gradAccum: 1,
  maxGradNorm: 1,
  seed: 42,
  shuffle: true,
};

export interface TrainState {
  step: number;
  epoch: number;
  /** index into `order` of the next sample */
  position: number;
  order: number[];
  rng: number;
  adam: AdamWState;
}

export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
  terms: Record<string, number>;
  metrics: Record<string, number>;
  samples: number;
}

/** a step whose loss or gradient is not finite: nothing was updated */
export class TrainingDiverged extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingDiverged';
  }
}

/**
 * What a training step needs from the model that is trained: sequence scores (keeping what the backward pass
 * needs), the backward pass seeded with w = dL/ds for each score, and the update. The engine is one backend
 * (`engineBackend`); the PyTorch worker is another (src/node/torch), so the data order, the loss, the
 * accumulation and the schedule stay here, in one place, whatever computes the model.
 */
export interface TrainBackend {
  /** the samples' scores; `save` keeps what backwardBatch needs */
  score(
    batch: EngineSample[],
    reqs: ReadonlyArray<SequenceRequirement>,
    which: 'policy' | 'reference',
    save: boolean,
  ): Promise<{ scores: SequenceScores[]; saved?: unknown }>;
  /** add Σ_key w_key·s_key of each sample (scored with save) to the step's gradients */
  backwardBatch(
    batch: EngineSample[],
    reqs: ReadonlyArray<SequenceRequirement>,
    saved: unknown,
    weights: SequenceScores[],
  ): Promise<void>;
  /**
   * clip the step's gradients to maxNorm (null: no clipping), take one AdamW step at lr, clear the gradients;
   * the norm before clipping, or a non-finite one and the tensor it came from (then nothing is updated)
   */
  update(o: {
    lr: number;
    maxNorm: number | null;
    optimizer: AdamWConfig;
    adam: AdamWState;
  }): Promise<{ gradNorm: number; bad?: string }>;
}

/** the engine as a training backend: host-side gradients summed in batch order (repeatable), AdamW on the host */
export function engineBackend(engine: Engine): TrainBackend & { engine: Engine; parameters(): Map<string, Float32Array> } {
  let grads = new Map<string, Float64Array>();
  const parameters = () => {
    const out = new Map<string, Float32Array>();
    for (const p of engine.lora.values()) {
      out.set(`${p.module}.lora_A.weight`, p.A);
      out.set(`${p.module}.lora_B.weight`, p.B);
    }
    return out;
  };
  return {
    engine,
    parameters,
    async score(batch, reqs, which, save) {
      // samples of a micro-batch run concurrently
      const fwd = await Promise.all(batch.map((s) => forwardSample(engine, s, reqs, which, { save })));
      return { scores: fwd.map((f) => f.scores), saved: fwd };
    },
    async backwardBatch(batch, reqs, saved, weights) {
      const fwd = saved as SampleForward[];
      const parts = await Promise.all(
        batch.map(async (s, i) => {
          const mine = new Map<string, Float64Array>();
          await backwardSample(engine, s, reqs, fwd[i], weights[i], mine);
          return mine;
        }),
      );
      // summed in batch order, so a run repeats exactly
      for (const mine of parts) addGradients(grads, mine);
    },
    async update({ lr, maxNorm, optimizer, adam }) {
      const g = grads;
      grads = new Map();
      const gradNorm = clipGradNorm(g, maxNorm);
      // a non-finite gradient would poison every moment of AdamW: nothing is updated
      if (!Number.isFinite(gradNorm))
        return { gradNorm, bad: [...g].find(([, x]) => x.some((v) => !Number.isFinite(v)))?.[0] ?? '?' };
      adamwStep(parameters(), g, adam, optimizer, lr);
      await engine.uploadLora();
      return { gradNorm };
    },
  };
}

export class Trainer {
  readonly requirements: SequenceRequirement[];
  readonly backend: TrainBackend;
  private readonly objectiveConfig: Record<string, unknown>;
  private readonly referenceCache = new Map<string, SequenceScores>();
  state: TrainState;

  constructor(
    model: Engine | TrainBackend,
    readonly samples: EngineSample[],
    readonly config: TrainConfig,
    state?: TrainState,
  ) {
    this.backend = 'score' in model ? model : engineBackend(model);
    if (!samples.length) throw new Error('no training samples');
    const { objective, config: oc } = resolveObjective(config.objective, config.objectiveSettings ?? {});
    this.objectiveConfig = oc;
    this.requirements = objective.requirements(oc);
    this.state = state ?? { step: 0, epoch: 0, position: 0, order: [], rng: config.seed >>> 0, adam: newAdamWState() };
    if (!state) this.newEpoch(false);
  }

  private newEpoch(advance: boolean): void {
    const st = this.state;
    if (advance) st.epoch++;
    st.position = 0;
    st.order = this.samples.map((_, i) => i);
    if (this.config.shuffle) {
      for (let i = st.order.length - 1; i > 0; i--) {
        const [u, next] = mulberry32(st.rng);
        st.rng = next;
        const j = Math.floor(u * (i + 1));
        [st.order[i], st.order[j]] = [st.order[j], st.order[i]];
      }
    }
  }

  private nextBatch(): EngineSample[] {
    const out: EngineSample[] = [];
    while (out.length < this.config.batchSize) {
      if (this.state.position >= this.state.order.length) this.newEpoch(true);
      out.push(this.samples[this.state.order[this.state.position++]]);
    }
    return out;
  }

  /** reference scores are computed once per sample: the reference never changes */
  async referenceScores(s: EngineSample): Promise<SequenceScores> {
    let r = this.referenceCache.get(s.id);
    if (!r) {
      r = (await this.backend.score([s], this.requirements, 'reference', false)).scores[0];
      this.referenceCache.set(s.id, r);
    }
    return r;
  }

  /** the loss and diagnostics on samples without training (policy as it is now) */
  async evaluate(samples: EngineSample[] = this.samples): Promise<LossResult> {
    const batch: PreferenceScores[] = [];
    for (const s of samples) {
      batch.push({
        policy: (await this.backend.score([s], this.requirements, 'policy', false)).scores[0],
        reference: await this.referenceScores(s),
        swap: s.swap,
      });
    }
    const { objective } = resolveObjective(this.config.objective, this.config.objectiveSettings ?? {});
    return evaluate(objective, this.objectiveConfig, batch);
  }

  /** one optimizer step over gradAccum micro-batches */
  async step(): Promise<StepLog> {
    const { objective } = resolveObjective(this.config.objective, this.config.objectiveSettings ?? {});
    let loss = 0;
    const terms: Record<string, number> = {},
      metrics: Record<string, number> = {};
    const ga = this.config.gradAccum;
    let n = 0;
    for (let a = 0; a < ga; a++) {
      const batch = this.nextBatch();
      const fwd = await this.backend.score(batch, this.requirements, 'policy', true);
      const scores: PreferenceScores[] = [];
      for (let i = 0; i < batch.length; i++) {
        scores.push({ policy: fwd.scores[i], reference: await this.referenceScores(batch[i]), swap: batch[i].swap });
      }
      const res = this.evaluateBatch(objective, scores, batch);
      const weights = batch.map((_, i) => {
        const w: SequenceScores = {};
        for (const [k, v] of Object.entries(res.grads[i])) w[k as keyof SequenceScores] = (v as number) / ga;
        return w;
      });
      await this.backend.backwardBatch(batch, this.requirements, fwd.saved, weights);
      loss += res.loss / ga;
      for (const [k, v] of Object.entries(res.terms)) terms[k] = (terms[k] ?? 0) + v / ga;
      for (const [k, v] of Object.entries(res.metrics)) metrics[k] = (metrics[k] ?? 0) + v / ga;
      n += batch.length;
    }
    if (!Number.isFinite(loss))
      throw new TrainingDiverged(`the loss is ${loss} at step ${this.state.step + 1}; the adapter keeps its last values`);
    const lr = this.config.optimizer.lr * lrFactor(this.config.schedule, this.state.step);
    const { gradNorm, bad } = await this.backend.update({
      lr,
      maxNorm: this.config.maxGradNorm,
      optimizer: this.config.optimizer,
      adam: this.state.adam,
    });
    if (bad !== undefined)
      throw new TrainingDiverged(
        `the gradient of ${bad} is not finite at step ${this.state.step + 1}; the adapter keeps its last values`,
      );
    this.state.step++;
    return {
      step: this.state.step,
      epoch: this.state.epoch + this.state.position / this.state.order.length,
      loss,
      learning_rate: lr,
      grad_norm: gradNorm,
      terms,
      metrics,
      samples: n,
    };
  }

  /**
   * the loss module on a micro-batch; a non-finite score (NaN weights, an overflow) stops the run before any
   * update, naming the sample and the sequence
   */
  private evaluateBatch(
    objective: Parameters<typeof evaluate>[0],
    scores: PreferenceScores[],
    batch: EngineSample[],
  ): LossResult {
    try {
      return evaluate(objective, this.objectiveConfig, scores);
    } catch (e) {
      if (!(e instanceof ScoreInputError)) throw e;
      const m = /^sample (\d+): (.*)$/s.exec(e.message);
      const what = m ? `sample ${batch[Number(m[1])]?.id ?? m[1]}: ${m[2]}` : e.message;
      throw new TrainingDiverged(
        `step ${this.state.step + 1}, ${what} (non-finite weights or an overflow in the forward pass); the adapter keeps its last values`,
      );
    }
  }

  /** the engine this trainer runs on (the engine backend) */
  get engine(): Engine {
    if (!('engine' in this.backend)) throw new Error('this trainer runs on another backend than the engine');
    return (this.backend as ReturnType<typeof engineBackend>).engine;
  }

  /** the engine backend's trainable tensors by PEFT name (views of the engine's host LoRA) */
  parameters(): Map<string, Float32Array> {
    if (!('parameters' in this.backend)) throw new Error('this trainer does not hold its parameters on the host');
    return (this.backend as ReturnType<typeof engineBackend>).parameters();
  }
}
