/**
 * IC-VCO: In-Context Visual Contrastive Optimisation (../shared/paper, Eq. 9-15), in two presets.
 *
 * Per direction (sample b, target image t ∈ {m, m'} with faithful answer c and unfaithful answer r):
 *   h_multi  = [log π - log π_ref](c | M, x̂_t) - [..](r | M, x̂_t)      shared two-image context: Z(M, x̂_t) cancels
 *   h_single = [..](c | t, x) - [..](r | t, x)                           span-masked scores (token mask)
 *   L_Multi = -log σ(β h_multi)      L_MultiAnc  = -log σ(β [log π - log π_ref](c | M, x̂_t))     (Eq. 9, 13)
 *   L_Single = -log σ(β h_single)    L_SingleAnc = -log σ(β [..](c | t, x))                       (Eq. 10, 12)
 *   p_multi = σ(β h_multi) (teacher), p_single = σ(β h_single) (student)
 *   L_VCDist = 1[p_multi > τ ∧ p_single < sg(p_multi)] · BCE(p_single, sg(p_multi))              (Eq. 11)
 *
 * `paper`: per target ½[λ1(L_Multi + η1 L_MultiAnc) + λ2(L_Single + η2 L_SingleAnc) + γ L_VCDist] (Eq. 14),
 * the two targets of a sample summed (Eq. 15), samples averaged. Defaults from Appendix C.
 *
 * `reference-code`: what the authors' trainer computes (../shared/notes/official-code-spec.md §5.4):
 *   loss = ½[λs(L_s + η A_s) + λsA A_s + γ V  +  λm(L_m + η A_m) + λmA A_m]
 * Differences from the paper, all deliberate here:
 *   - every L and A is a mean over the 2B directions, and the branches are averaged (the ½): the whole loss is
 *     ½ of the paper's at equal weights;
 *   - the anchor is counted twice: an in-place `+=` aliases base_loss, so the anchor coefficient is
 *     λ·η + λ_anchor (λsA = λs, λmA = λm by default);
 *   - V averages BCE over the *active* directions only (Σ a·BCE / Σ a; 0 when none), the paper over all;
 *   - γ = 0.4 (the paper states 0.3); an optional anchor margin δ (0 by default);
 *   - with one branch switched off the loss is that branch's total, without the ½ and without VCDist.
 *
 * Both presets take the ablation switches of the paper's Table 4.
 */
import { Scalar, sigmoid } from './scalar.js';
import {
  type Built,
  type Direction,
  type Inputs,
  type Objective,
  anchorLoss,
  bceWithLogit,
  directions,
  dpoLoss,
  finiteMean,
  key,
  margin,
  rewardMetrics,
} from './objective.js';
import type { DirectionTrace, Img, SequenceRequirement } from './types.js';

/** The paper's Table 4 ablations, each a switch (all true = full IC-VCO) */
export interface IcVcoSwitches {
  /** false: "w/o single-image branch" (also removes VCDist, whose student it is) */
  singleBranch: boolean;
  /** false: only the single-image branch (the official use_multi_image=false; also removes VCDist) */
  multiBranch: boolean;
  /** false: "w/o L_VCDist" */
  vcdist: boolean;
  /** false: "w/o token mask": the single branch scores whole responses */
  tokenMask: boolean;
  /** false: "w/o L_Anc" */
  anchor: boolean;
  /** false: "w/o stop-gradient": VCDist also sends gradient into the multi-image (teacher) scores */
  stopGradient: boolean;
  /** false: "w/o dual-gating": distil on every direction */
  dualGating: boolean;
}

export interface IcVcoPaperConfig extends IcVcoSwitches {
  preset: 'paper';
  beta: number;
  lambda1: number;
  lambda2: number;
  eta1: number;
  eta2: number;
  gamma: number;
  /** VCDist correctness-gate threshold on p_multi */
  tau: number;
}

/** hyper-parameter names as the official VCOConfig has them */
export interface IcVcoCodeConfig extends IcVcoSwitches {
  preset: 'reference-code';
  beta: number;
  lambda_s: number;
  lambda_m: number;
  eta: number;
  lambda_sA: number;
  lambda_mA: number;
  gamma: number;
  tau: number;
  /** anchor_delta */
  delta: number;
}

export type IcVcoConfig = IcVcoPaperConfig | IcVcoCodeConfig;

const ALL_ON: IcVcoSwitches = {
  singleBranch: true,
  multiBranch: true,
  vcdist: true,
  tokenMask: true,
  anchor: true,
  stopGradient: true,
  dualGating: true,
};

export function icvcoConfig(preset: 'paper', overrides?: Partial<IcVcoPaperConfig>): IcVcoPaperConfig;
export function icvcoConfig(preset: 'reference-code', overrides?: Partial<IcVcoCodeConfig>): IcVcoCodeConfig;
export function icvcoConfig(preset: IcVcoConfig['preset'], overrides: Partial<IcVcoConfig> = {}): IcVcoConfig {
  if (preset === 'paper') {
    return {
      ...ALL_ON,
      preset,
      beta: 0.1,
      lambda1: 0.75,
      lambda2: 1.75,
      eta1: 1,
      eta2: 1,
      gamma: 0.3,
      tau: 0.5,
      ...(overrides as Partial<IcVcoPaperConfig>),
    } as IcVcoPaperConfig;
  }
  if (preset === 'reference-code') {
    return {
      ...ALL_ON,
      preset,
      beta: 0.1,
      lambda_s: 1.75,
      lambda_m: 0.75,
      eta: 1,
      lambda_sA: 1.75,
      lambda_mA: 0.75,
      gamma: 0.4,
      tau: 0.5,
      delta: 0,
      ...(overrides as Partial<IcVcoCodeConfig>),
    } as IcVcoCodeConfig;
  }
  throw new Error(`unknown IC-VCO preset "${preset as string}": use "paper" or "reference-code"`);
}

function requirements(c: IcVcoConfig): SequenceRequirement[] {
  const req: SequenceRequirement[] = [];
  const single = c.singleBranch;
  const multi = c.multiBranch;
  for (const t of ['m', "m'"] as const) {
    for (const y of ['y', "y'"] as const) {
      if (single) req.push({ key: key(t, y), mask: c.tokenMask ? 'span' : 'full' });
      if (multi) req.push({ key: key(`M>${t}`, y), mask: 'full' });
    }
  }
  return req;
}

/** one branch of one direction: DPO on the margin, the anchor on the chosen answer, and TRL's reward pair */
interface BranchTerms {
  margin: Scalar;
  loss: Scalar;
  anchor: Scalar;
  reward: { chosen: number; rejected: number; pos: 1 | 2; logpChosen: number; logpRejected: number };
}

/** VCDist on one direction: the multi-image teacher, the single-image student, and the dual gate */
interface VcdistTerms {
  teacher: number;
  student: number;
  /** correctness gate: p_multi > τ */
  gatePass: 0 | 1;
  /** both gates: the teacher is right and more confident than the student */
  triggered: 0 | 1;
  /** distilled on this direction (the dual gate, or every direction without it) */
  active: 0 | 1;
  kl: number;
  /** BCE(p_single, sg(p_multi)) where active and VCDist is on */
  bce?: Scalar;
}

interface DirectionTerms {
  single?: BranchTerms;
  multi?: BranchTerms;
  vcdist?: VcdistTerms;
  trace: DirectionTrace;
}

function branchTerms(inp: Inputs, d: Direction, ctx: Img | `M>${Img}`, beta: number, delta: number): BranchTerms {
  const kc = key(ctx, d.chosen),
    kr = key(ctx, d.rejected);
  const h = margin(inp, d.sample, kc, kr);
  const lrc = inp.logRatio(d.sample, kc);
  return {
    margin: h,
    loss: dpoLoss(h, beta),
    anchor: anchorLoss(lrc, beta, delta),
    reward: {
      chosen: beta * lrc.value,
      rejected: beta * inp.logRatio(d.sample, kr).value,
      pos: d.pos,
      logpChosen: inp.pol(d.sample, kc).value,
      logpRejected: inp.pol(d.sample, kr).value,
    },
  };
}

/** everything IC-VCO computes on one direction (target image t with its faithful answer), before weighting */
function directionTerms(inp: Inputs, d: Direction, c: IcVcoConfig): DirectionTerms {
  const { beta, tau } = c;
  const delta = c.preset === 'reference-code' ? c.delta : 0;
  const useVcdist = c.vcdist && c.singleBranch && c.multiBranch;
  const trace: DirectionTrace = { sample: d.sample, target: d.target, pos: d.pos };
  const single = c.singleBranch ? branchTerms(inp, d, d.target, beta, delta) : undefined;
  const multi = c.multiBranch ? branchTerms(inp, d, `M>${d.target}`, beta, delta) : undefined;
  if (single) {
    trace.h_single = single.margin.value;
    trace.p_single = sigmoid(beta * single.margin.value);
  }
  if (multi) {
    trace.h_multi = multi.margin.value;
    trace.p_multi = sigmoid(beta * multi.margin.value);
  }
  let vcdist: VcdistTerms | undefined;
  if (single && multi) {
    const zs = single.margin.scale(beta);
    const teacherS = multi.margin.scale(beta).sigmoid();
    const teacher = c.stopGradient ? teacherS.detach() : teacherS;
    const student = sigmoid(zs.value);
    const gatePass = teacher.value > tau ? 1 : 0;
    const triggered = gatePass && student < teacher.value ? 1 : 0;
    const active = c.dualGating ? triggered : 1;
    vcdist = {
      teacher: teacher.value,
      student,
      gatePass,
      triggered,
      active,
      kl: bernoulliKl(teacher.value, student),
      bce: useVcdist && active ? bceWithLogit(zs, teacher) : undefined,
    };
    trace.vcdist_gate_pass = gatePass;
    trace.vcdist_active = useVcdist ? active : 0;
  }
  return { single, multi, vcdist, trace };
}

const meanOf = (xs: Scalar[]) => (xs.length ? Scalar.linear(xs.map((x) => [x, 1 / xs.length] as const)) : new Scalar(0));
const sumOf = (xs: Scalar[]) => (xs.length ? Scalar.linear(xs.map((x) => [x, 1] as const)) : new Scalar(0));

interface BranchMeans {
  Ls: Scalar;
  As: Scalar;
  Lm: Scalar;
  Am: Scalar;
  distilled: Scalar[];
}

function branchMeans(dirs: DirectionTerms[]): BranchMeans {
  const pick = (f: (t: DirectionTerms) => Scalar | undefined) => dirs.map(f).filter((x): x is Scalar => x !== undefined);
  return {
    Ls: meanOf(pick((t) => t.single?.loss)),
    As: meanOf(pick((t) => t.single?.anchor)),
    Lm: meanOf(pick((t) => t.multi?.loss)),
    Am: meanOf(pick((t) => t.multi?.anchor)),
    distilled: pick((t) => t.vcdist?.bce),
  };
}

/**
 * The paper (Eq. 14-15): per direction ½[λ1(L_Multi + η1 L_MultiAnc) + λ2(L_Single + η2 L_SingleAnc) +
 * γ·1[gate]·BCE], the two targets of a sample summed, samples averaged
 */
function combinePaper(
  dirs: DirectionTerms[],
  c: IcVcoPaperConfig,
  samples: number,
): { loss: Scalar; terms: Record<string, number> } {
  const anc = c.anchor ? 1 : 0;
  const perDirection = dirs.map((t) => {
    const parts: Array<readonly [Scalar, number]> = [];
    if (t.single) parts.push([t.single.loss, c.lambda2], [t.single.anchor, c.lambda2 * c.eta2 * anc]);
    if (t.multi) parts.push([t.multi.loss, c.lambda1], [t.multi.anchor, c.lambda1 * c.eta1 * anc]);
    if (t.vcdist?.bce) parts.push([t.vcdist.bce, c.gamma]);
    return Scalar.linear(parts).scale(0.5);
  });
  const m = branchMeans(dirs);
  const V = sumOf(m.distilled).scale(1 / dirs.length);
  const useVcdist = c.vcdist && c.singleBranch && c.multiBranch;
  return {
    loss: sumOf(perDirection).scale(1 / samples),
    terms: {
      vcdist_loss: V.value,
      loss_multi_weighted: c.multiBranch ? c.lambda1 * (m.Lm.value + anc * c.eta1 * m.Am.value) : 0,
      loss_single_weighted: c.singleBranch ? c.lambda2 * (m.Ls.value + anc * c.eta2 * m.As.value) : 0,
      loss_anchor_weighted:
        anc * ((c.multiBranch ? c.lambda1 * c.eta1 * m.Am.value : 0) + (c.singleBranch ? c.lambda2 * c.eta2 * m.As.value : 0)),
      loss_vcdist_weighted: useVcdist ? c.gamma * V.value : 0,
    },
  };
}

/**
 * The official trainer (spec §5.4): ½[λs(L_s + η A_s) + λsA A_s + γ V + λm(L_m + η A_m) + λmA A_m] over means
 * of the directions, V over the active directions only; one branch alone is that branch's total
 */
function combineReferenceCode(dirs: DirectionTerms[], c: IcVcoCodeConfig): { loss: Scalar; terms: Record<string, number> } {
  const m = branchMeans(dirs);
  const useVcdist = c.vcdist && c.singleBranch && c.multiBranch;
  const V = m.distilled.length > 0 ? sumOf(m.distilled).scale(1 / m.distilled.length) : new Scalar(0);
  const anc = c.anchor ? 1 : 0;
  // λ·(L + η·A): the aliased base_loss; + λ_A·A: the explicit anchor term
  const singleTotal = c.singleBranch
    ? Scalar.linear([
        [m.Ls, c.lambda_s],
        [m.As, anc * (c.lambda_s * c.eta + c.lambda_sA)],
        [V, useVcdist ? c.gamma : 0],
      ])
    : undefined;
  const multiTotal = c.multiBranch
    ? Scalar.linear([
        [m.Lm, c.lambda_m],
        [m.Am, anc * (c.lambda_m * c.eta + c.lambda_mA)],
      ])
    : undefined;
  return {
    loss: singleTotal && multiTotal ? singleTotal.add(multiTotal).scale(0.5) : (singleTotal ?? multiTotal)!,
    terms: {
      vcdist_loss: V.value,
      loss_single_weighted: c.singleBranch ? c.lambda_s * (m.Ls.value + anc * c.eta * m.As.value) : 0,
      loss_multi_weighted: c.multiBranch ? c.lambda_m * (m.Lm.value + anc * c.eta * m.Am.value) : 0,
      loss_anchor_weighted:
        anc * ((c.singleBranch ? c.lambda_sA * m.As.value : 0) + (c.multiBranch ? c.lambda_mA * m.Am.value : 0)),
      loss_vcdist_weighted: useVcdist ? c.gamma * V.value : 0,
    },
  };
}

function build(inp: Inputs, c: IcVcoConfig): Built {
  if (!c.singleBranch && !c.multiBranch) {
    throw new Error('IC-VCO with both branches switched off has no loss: enable singleBranch or multiBranch');
  }
  const layout = directions(inp.batch);
  const dirs = layout.map((d) => directionTerms(inp, d, c));
  const { loss, terms } = c.preset === 'paper' ? combinePaper(dirs, c, inp.size) : combineReferenceCode(dirs, c);
  const m = branchMeans(dirs);
  const allTerms: Record<string, Scalar | number> = {
    single_loss: m.Ls.value,
    multi_loss: m.Lm.value,
    single_anchor_loss: m.As.value,
    multi_anchor_loss: m.Am.value,
    ...terms,
    loss_combined: loss.value,
  };
  const metrics: Record<string, number> = {};
  const singles = dirs.flatMap((t) => (t.single ? [t.single.reward] : []));
  const multis = dirs.flatMap((t) => (t.multi ? [t.multi.reward] : []));
  if (singles.length) Object.assign(metrics, rewardMetrics('single_', singles));
  if (multis.length) Object.assign(metrics, rewardMetrics('multi_', multis));
  const gated = dirs.flatMap((t, i) => (t.vcdist ? [{ ...t.vcdist, pos: layout[i].pos }] : []));
  if (gated.length) Object.assign(metrics, vcdistMetrics(gated, c.tau));
  return { loss, terms: allTerms, metrics, directions: dirs.map((t) => t.trace) };
}

function bernoulliKl(t: number, s: number): number {
  // the official diagnostic, eps 1e-6 as vco_trainer.py
  const e = 1e-6;
  return t * (Math.log(t + e) - Math.log(s + e)) + (1 - t) * (Math.log(1 - t + e) - Math.log(1 - s + e));
}

/** the official code's VCDist diagnostics (spec §7.2), rates over all directions of the batch */
function vcdistMetrics(dirs: Array<VcdistTerms & { pos: 1 | 2 }>, tau: number): Record<string, number> {
  const N = dirs.length;
  const sum = (f: (d: VcdistTerms) => number, of = dirs) => of.reduce((a, d) => a + f(d), 0);
  const nPass = sum((d) => d.gatePass),
    nTrig = sum((d) => d.triggered);
  /** mean KL over the directions a weight selects (0 when none) */
  const klOver = (w: (d: VcdistTerms) => number) => {
    const n = sum(w);
    return n > 0 ? sum((d) => d.kl * w(d)) / n : 0;
  };
  const out: Record<string, number> = {
    vcdist_teacher_prob: finiteMean(dirs.map((d) => d.teacher)),
    vcdist_student_prob: finiteMean(dirs.map((d) => d.student)),
    vcdist_teacher_acc: nPass / N,
    vcdist_teacher_confidence: finiteMean(dirs.map((d) => Math.abs(d.teacher - 0.5))),
    vcdist_gate_pass_rate: nPass / N,
    vcdist_trigger_rate: nTrig / N,
    vcdist_active_rate: sum((d) => d.active) / N,
    vcdist_correctness_blocked_rate: (N - nPass) / N,
    vcdist_confidence_blocked_rate: (nPass - nTrig) / N,
    vcdist_valid_kl: klOver((d) => d.gatePass),
    vcdist_active_kl: klOver((d) => d.active),
    vcdist_global_kl: finiteMean(dirs.map((d) => d.kl)),
    vcdist_threshold: tau,
  };
  for (const p of [1, 2] as const) {
    const at = dirs.filter((d) => d.pos === p);
    if (!at.length) continue;
    out[`vcdist_pos${p}_teacher_prob`] = finiteMean(at.map((d) => d.teacher));
    out[`vcdist_pos${p}_teacher_acc`] = finiteMean(at.map((d) => d.gatePass));
    out[`vcdist_pos${p}_gate_pass_rate`] = finiteMean(at.map((d) => d.gatePass));
    out[`vcdist_pos${p}_trigger_rate`] = finiteMean(at.map((d) => d.triggered));
    out[`vcdist_pos${p}_global_count`] = at.length;
  }
  return out;
}

export const icvco: Objective<IcVcoConfig> = {
  id: 'icvco',
  title: 'IC-VCO (multi-image DPO + single-image DPO + anchors + gated VCDist)',
  source: 'IC-VCO paper Eq. 9-15 and App. C; official code vco_trainer.py (notes/official-code-spec.md §5)',
  defaults: () => icvcoConfig('paper'),
  requirements,
  build,
};
