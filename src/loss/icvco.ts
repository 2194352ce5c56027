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
  type Built, type Inputs, type Objective, anchorLoss, bceWithLogit, directions, dpoLoss, finiteMean, key, margin,
  rewardMetrics,
} from './objective.js';
import type { DirectionTrace, SequenceRequirement } from './types.js';

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
  singleBranch: true, multiBranch: true, vcdist: true, tokenMask: true, anchor: true, stopGradient: true,
  dualGating: true,
};

export function icvcoConfig(preset: 'paper', overrides?: Partial<IcVcoPaperConfig>): IcVcoPaperConfig;
export function icvcoConfig(preset: 'reference-code', overrides?: Partial<IcVcoCodeConfig>): IcVcoCodeConfig;
export function icvcoConfig(preset: IcVcoConfig['preset'], overrides: Partial<IcVcoConfig> = {}): IcVcoConfig {
  if (preset === 'paper') {
    return { ...ALL_ON, preset, beta: 0.1, lambda1: 0.75, lambda2: 1.75, eta1: 1, eta2: 1, gamma: 0.3, tau: 0.5,
      ...(overrides as Partial<IcVcoPaperConfig>), } as IcVcoPaperConfig;
  }
  if (preset === 'reference-code') {
    return { ...ALL_ON, preset, beta: 0.1, lambda_s: 1.75, lambda_m: 0.75, eta: 1, lambda_sA: 1.75, lambda_mA: 0.75,
      gamma: 0.4, tau: 0.5, delta: 0, ...(overrides as Partial<IcVcoCodeConfig>), } as IcVcoCodeConfig;
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

function build(inp: Inputs, c: IcVcoConfig): Built {
  if (!c.singleBranch && !c.multiBranch) {
    throw new Error('IC-VCO with both branches switched off has no loss: enable singleBranch or multiBranch');
  }
  const { beta, tau } = c;
  const delta = c.preset === 'reference-code' ? c.delta : 0;
  const useVcdist = c.vcdist && c.singleBranch && c.multiBranch;
  const dirs = directions(inp.batch);
  const B = inp.size;
  const N = dirs.length;

  const ls: Scalar[] = [], lm: Scalar[] = [], as: Scalar[] = [], am: Scalar[] = [];
  const vcd: Scalar[] = []; // a_i·BCE_i for active directions
  const traces: DirectionTrace[] = [];
  const single: Array<{ chosen: number; rejected: number; pos: 1 | 2 }> = [];
  const multi: Array<{ chosen: number; rejected: number; pos: 1 | 2 }> = [];
  const g: number[] = [], q: number[] = [], act: number[] = [], tp: number[] = [], sp: number[] = [], kl: number[] = [];
  const perDir: Scalar[] = []; // paper preset: ½[...] per direction

  for (const d of dirs) {
    const b = d.sample;
    const trace: DirectionTrace = { sample: b, target: d.target, pos: d.pos };
    let hs: Scalar | undefined, hm: Scalar | undefined;
    let dirLoss = new Scalar(0);
    if (c.singleBranch) {
      const kc = key(d.target, d.chosen), kr = key(d.target, d.rejected);
      hs = margin(inp, b, kc, kr);
      const lrc = inp.logRatio(b, kc);
      const l = dpoLoss(hs, beta), a = anchorLoss(lrc, beta, delta);
      ls.push(l); as.push(a);
      single.push({ chosen: beta * lrc.value, rejected: beta * inp.logRatio(b, kr).value, pos: d.pos });
      trace.h_single = hs.value;
      trace.p_single = sigmoid(beta * hs.value);
      if (c.preset === 'paper') dirLoss = dirLoss.add(l.add(c.anchor ? a.scale(c.eta2) : 0).scale(c.lambda2));
    }
    if (c.multiBranch) {
      const kc = key(`M>${d.target}`, d.chosen), kr = key(`M>${d.target}`, d.rejected);
      hm = margin(inp, b, kc, kr);
      const lrc = inp.logRatio(b, kc);
      const l = dpoLoss(hm, beta), a = anchorLoss(lrc, beta, delta);
      lm.push(l); am.push(a);
      multi.push({ chosen: beta * lrc.value, rejected: beta * inp.logRatio(b, kr).value, pos: d.pos });
      trace.h_multi = hm.value;
      trace.p_multi = sigmoid(beta * hm.value);
      if (c.preset === 'paper') dirLoss = dirLoss.add(l.add(c.anchor ? a.scale(c.eta1) : 0).scale(c.lambda1));
    }
    if (hs && hm) {
      const zs = hs.scale(beta);
      const teacher = hm.scale(beta).sigmoid();
      const t = c.stopGradient ? teacher.detach() : teacher;
      const s = sigmoid(zs.value);
      const gate = t.value > tau ? 1 : 0;
      const conf = s < t.value ? 1 : 0;
      const active = c.dualGating ? gate * conf : 1;
      g.push(gate); q.push(gate * conf); act.push(active); tp.push(t.value); sp.push(s);
      kl.push(bernoulliKl(t.value, s));
      trace.vcdist_gate_pass = gate;
      trace.vcdist_active = useVcdist ? active : 0;
      if (useVcdist && active) {
        const bce = bceWithLogit(zs, t);
        vcd.push(bce);
        if (c.preset === 'paper') dirLoss = dirLoss.add(bce.scale(c.gamma));
      }
    }
    perDir.push(dirLoss.scale(0.5));
    traces.push(trace);
  }

  const mean = (xs: Scalar[]) => (xs.length ? Scalar.linear(xs.map((x) => [x, 1 / xs.length] as const)) : new Scalar(0));
  const sumS = (xs: Scalar[]) => (xs.length ? Scalar.linear(xs.map((x) => [x, 1] as const)) : new Scalar(0));
  const Ls = mean(ls), Lm = mean(lm), As = mean(as), Am = mean(am);
  const terms: Record<string, Scalar | number> = {
    single_loss: Ls.value, multi_loss: Lm.value, single_anchor_loss: As.value, multi_anchor_loss: Am.value,
  };

  let loss: Scalar;
  if (c.preset === 'paper') {
    // Σ over the two targets (Eq. 15), mean over samples
    loss = sumS(perDir).scale(1 / B);
    const V = sumS(vcd).scale(1 / N);
    terms.vcdist_loss = V.value;
    terms.loss_multi_weighted = c.multiBranch ? c.lambda1 * (Lm.value + (c.anchor ? c.eta1 * Am.value : 0)) : 0;
    terms.loss_single_weighted = c.singleBranch ? c.lambda2 * (Ls.value + (c.anchor ? c.eta2 * As.value : 0)) : 0;
    terms.loss_anchor_weighted = c.anchor
      ? (c.multiBranch ? c.lambda1 * c.eta1 * Am.value : 0) + (c.singleBranch ? c.lambda2 * c.eta2 * As.value : 0) : 0;
    terms.loss_vcdist_weighted = useVcdist ? c.gamma * V.value : 0;
  } else {
    const nActive = vcd.length;
    const V = nActive > 0 ? sumS(vcd).scale(1 / nActive) : new Scalar(0);
    const anc = c.anchor ? 1 : 0;
    // λ·(L + η·A): the aliased base_loss; + λ_A·A: the explicit anchor term
    const singleTotal = c.singleBranch
      ? Scalar.linear([[Ls, c.lambda_s], [As, anc * (c.lambda_s * c.eta + c.lambda_sA)], [V, useVcdist ? c.gamma : 0]])
      : undefined;
    const multiTotal = c.multiBranch
      ? Scalar.linear([[Lm, c.lambda_m], [Am, anc * (c.lambda_m * c.eta + c.lambda_mA)]])
      : undefined;
    loss = singleTotal && multiTotal ? singleTotal.add(multiTotal).scale(0.5) : (singleTotal ?? multiTotal)!;
    terms.vcdist_loss = V.value;
    terms.loss_single_weighted = c.singleBranch ? c.lambda_s * (Ls.value + anc * c.eta * As.value) : 0;
    terms.loss_multi_weighted = c.multiBranch ? c.lambda_m * (Lm.value + anc * c.eta * Am.value) : 0;
    terms.loss_anchor_weighted = anc * ((c.singleBranch ? c.lambda_sA * As.value : 0) +
      (c.multiBranch ? c.lambda_mA * Am.value : 0));
    terms.loss_vcdist_weighted = useVcdist ? c.gamma * V.value : 0;
  }
  terms.loss_combined = loss.value;

  const metrics: Record<string, number> = {};
  if (single.length) Object.assign(metrics, rewardMetrics('single_', single));
  if (multi.length) Object.assign(metrics, rewardMetrics('multi_', multi));
  if (g.length) Object.assign(metrics, vcdistMetrics(dirs.map((d) => d.pos), { g, q, act, tp, sp, kl }, tau));
  return { loss, terms, metrics, directions: traces };
}

function bernoulliKl(t: number, s: number): number {
  // the official diagnostic, eps 1e-6 as vco_trainer.py
  const e = 1e-6;
  return t * (Math.log(t + e) - Math.log(s + e)) + (1 - t) * (Math.log(1 - t + e) - Math.log(1 - s + e));
}

/** the official code's VCDist diagnostics (spec §7.2), rates over all directions of the batch */
function vcdistMetrics(
  pos: Array<1 | 2>,
  v: { g: number[]; q: number[]; act: number[]; tp: number[]; sp: number[]; kl: number[] },
  tau: number,
): Record<string, number> {
  const N = v.g.length;
  const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);
  const nPass = sum(v.g), nTrig = sum(v.q), nAct = sum(v.act);
  const weighted = (w: number[]) => {
    const n = sum(w);
    return n > 0 ? v.kl.reduce((a, k, i) => a + k * w[i], 0) / n : 0;
  };
  const out: Record<string, number> = {
    vcdist_teacher_prob: finiteMean(v.tp),
    vcdist_student_prob: finiteMean(v.sp),
    vcdist_teacher_acc: nPass / N,
    vcdist_teacher_confidence: finiteMean(v.tp.map((t) => Math.abs(t - 0.5))),
    vcdist_gate_pass_rate: nPass / N,
    vcdist_trigger_rate: nTrig / N,
    vcdist_active_rate: nAct / N,
    vcdist_correctness_blocked_rate: (N - nPass) / N,
    vcdist_confidence_blocked_rate: (nPass - nTrig) / N,
    vcdist_valid_kl: weighted(v.g),
    vcdist_active_kl: weighted(v.act),
    vcdist_global_kl: finiteMean(v.kl),
    vcdist_threshold: tau,
  };
  for (const p of [1, 2] as const) {
    const idx = pos.map((x, i) => (x === p ? i : -1)).filter((i) => i >= 0);
    if (!idx.length) continue;
    out[`vcdist_pos${p}_teacher_prob`] = finiteMean(idx.map((i) => v.tp[i]));
    out[`vcdist_pos${p}_teacher_acc`] = finiteMean(idx.map((i) => v.g[i]));
    out[`vcdist_pos${p}_gate_pass_rate`] = finiteMean(idx.map((i) => v.g[i]));
    out[`vcdist_pos${p}_trigger_rate`] = finiteMean(idx.map((i) => v.q[i]));
    out[`vcdist_pos${p}_global_count`] = idx.length;
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
