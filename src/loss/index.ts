/** The preference-loss module: pure TypeScript over numbers, shared by the browser worker and Node. */
export * from './types.js';
export { Scalar, sigmoid, logSigmoid, softplus, logSumExp } from './scalar.js';
export { evaluate, directions, type Objective, type Direction } from './objective.js';
export {
  icvco,
  icvcoConfig,
  type IcVcoConfig,
  type IcVcoPaperConfig,
  type IcVcoCodeConfig,
  type IcVcoSwitches,
} from './icvco.js';
export { dpo, mdpo, visdpo, svco, symmpo, vdpo } from './baselines.js';
export { OBJECTIVES, getObjective, resolveObjective, computeLoss, requiredSequences } from './registry.js';
export * as partition from './partition.js';
