/**
 * Held-out reward accuracies on one yardstick for any policy, whatever objective trained it: each held-out
 * preference sample read through three branches of the loss module (TRL's strict accuracy, ties count 0):
 *  - single: response contrast within one image, y vs y′ given m and y′ vs y given m′ (IC-VCO's single branch,
 *    token-masked where the sample has spans);
 *  - multi: the same contrast in the shared two-image context under each anchor (IC-VCO's multi branch);
 *  - image_swap: one response under two images, y given m vs given m′ (visual DPO's pair).
 */
import type { Engine } from './engine.js';
import type { EngineSample } from './sample.js';
import { type TrainBackend, Trainer } from './trainer.js';

export const HELD_OUT_BRANCHES = {
  single: { objective: 'icvco:paper', metric: 'single_rewards/accuracies' },
  multi: { objective: 'icvco:paper', metric: 'multi_rewards/accuracies' },
  image_swap: { objective: 'visdpo', metric: 'rewards/accuracies' },
} as const;
export type HeldOutBranch = keyof typeof HELD_OUT_BRANCHES;

/** the loss module's metrics of `objective` on samples, policy as the engine has it (nothing is trained) */
export async function evaluateObjective(
  engine: Engine | TrainBackend,
  samples: EngineSample[],
  objective: string,
  settings: Record<string, unknown> = {},
): Promise<{ loss: number; metrics: Record<string, number> }> {
  const t = new Trainer(engine, samples, {
    objective,
    objectiveSettings: settings,
    optimizer: { lr: 0, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
    schedule: { kind: 'constant', warmupSteps: 0, totalSteps: 1 },
    batchSize: 1,
    gradAccum: 1,
    maxGradNorm: null,
    seed: 0,
    shuffle: false,
  });
  const r = await t.evaluate();
  return { loss: r.loss, metrics: r.metrics };
}

export async function heldOutAccuracy(
  engine: Engine | TrainBackend,
  samples: EngineSample[],
): Promise<Record<HeldOutBranch, number>> {
  const byObjective = new Map<string, Record<string, number>>();
  const out = {} as Record<HeldOutBranch, number>;
  for (const branch of Object.keys(HELD_OUT_BRANCHES) as HeldOutBranch[]) {
    const { objective, metric } = HELD_OUT_BRANCHES[branch];
    if (!byObjective.has(objective)) byObjective.set(objective, (await evaluateObjective(engine, samples, objective)).metrics);
    out[branch] = byObjective.get(objective)![metric];
  }
  return out;
}
