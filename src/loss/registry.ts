/** Every objective by id: the browser, the Node trainer and the CLI look them up here. */
import { dpo, mdpo, svco, symmpo, vdpo, visdpo } from './baselines.js';
import { icvco, icvcoConfig } from './icvco.js';
import { type Objective, evaluate } from './objective.js';
import type { LossResult, PreferenceScores, SequenceRequirement } from './types.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const OBJECTIVES: Record<string, Objective<any>> = {
  icvco,
  dpo,
  mdpo,
  visdpo,
  svco,
  symmpo,
  vdpo,
};

export function getObjective(id: string): Objective<unknown> {
  const o = OBJECTIVES[id];
  if (!o) throw new Error(`unknown objective "${id}": choose one of ${Object.keys(OBJECTIVES).join(', ')}`);
  return o;
}

/**
 * Resolve an objective id (and, for IC-VCO, a preset: 'icvco', 'icvco:paper', 'icvco:reference-code')
 * plus overrides into the objective and a full config.
 */
export function resolveObjective(
  spec: string,
  overrides: Record<string, unknown> = {},
): {
  objective: Objective<unknown>;
  config: Record<string, unknown>;
} {
  const [id, preset] = spec.split(':');
  const objective = getObjective(id);
  const unknownKeys = (base: object) => Object.keys(overrides).filter((k) => !(k in base));
  let config: Record<string, unknown>;
  if (id === 'icvco') {
    const p = (preset ?? (overrides.preset as string | undefined) ?? 'paper') as 'paper' | 'reference-code';
    config = icvcoConfig(p as 'paper') as unknown as Record<string, unknown>;
  } else {
    if (preset) throw new Error(`objective "${id}" has no presets (got "${spec}")`);
    config = objective.defaults() as Record<string, unknown>;
  }
  const bad = unknownKeys(config);
  if (bad.length) {
    throw new Error(
      `objective "${spec}" has no setting ${bad.map((k) => `"${k}"`).join(', ')}; its settings are ` +
        Object.keys(config).join(', '),
    );
  }
  return { objective, config: { ...config, ...overrides } };
}

export function computeLoss(
  spec: string,
  batch: ReadonlyArray<PreferenceScores>,
  overrides: Record<string, unknown> = {},
): LossResult {
  const { objective, config } = resolveObjective(spec, overrides);
  return evaluate(objective, config, batch);
}

export function requiredSequences(spec: string, overrides: Record<string, unknown> = {}): SequenceRequirement[] {
  const { objective, config } = resolveObjective(spec, overrides);
  return objective.requirements(config);
}
