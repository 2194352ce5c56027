/**
 * The baselines of the IC-VCO paper's Tables 2-3 on the same preference-sample format (m, m', x, y, y').
 * Each formula is the official code's, cited where it lives; each objective is a mean over samples of
 * per-sample sums, as those codes reduce. Following the IC-VCO paper's Appendix C, the single-image
 * scores use the token mask (switch `tokenMask`), and methods without a symmetric relation (DPO, mDPO,
 * V-DPO) treat (m, x, y ≻ y') and (m', x, y' ≻ y) as two separate pairs (a mean over the 2B pairs).
 */
import { Scalar } from './scalar.js';
import {
  type Built,
  type Direction,
  type Inputs,
  type Objective,
  anchorLoss,
  directions,
  dpoLoss,
  key,
  margin,
  rewardMetrics,
} from './objective.js';
import type { Img, Resp, SeqKey, SequenceRequirement } from './types.js';

const singleKeys = (tokenMask: boolean): SequenceRequirement[] =>
  (['m|y', "m|y'", "m'|y", "m'|y'"] as const).map((k) => ({ key: k, mask: tokenMask ? 'span' : 'full' }));

const meanOf = (xs: Scalar[]) => Scalar.linear(xs.map((x) => [x, 1 / xs.length] as const));

/** (log π - log π_ref)(y | a) - (..)(y | b): one response, two images. Here Z(a,x) ≠ Z(b,x) (paper Eq. 7). */
function imageMargin(inp: Inputs, b: number, resp: Resp, a: Img, other: Img): Scalar {
  return margin(inp, b, key(a, resp), key(other, resp));
}

function responseTraces(inp: Inputs, dirs: Direction[], beta: number) {
  return dirs.map((d) => ({
    chosen: beta * inp.logRatio(d.sample, key(d.target, d.chosen)).value,
    rejected: beta * inp.logRatio(d.sample, key(d.target, d.rejected)).value,
    pos: d.pos,
    logpChosen: inp.pol(d.sample, key(d.target, d.chosen)).value,
    logpRejected: inp.pol(d.sample, key(d.target, d.rejected)).value,
  }));
}

function imageTraces(inp: Inputs, dirs: Direction[], beta: number) {
  // the image-contrast pair: chosen = (target image, its answer), rejected = (other image, same answer)
  return dirs.map((d) => ({
    chosen: beta * inp.logRatio(d.sample, key(d.target, d.chosen)).value,
    rejected: beta * inp.logRatio(d.sample, key(d.other, d.chosen)).value,
    pos: d.pos,
  }));
}

// ---------------------------------------------------------------- DPO

export interface DpoConfig {
  beta: number;
  tokenMask: boolean;
}

/**
 * DPO (Rafailov et al. 2023, paper Eq. 4) on text preferences in single-image contexts:
 * -log σ(β h) for (m: y ≻ y') and (m': y' ≻ y). TRL DPOTrainer `loss_type="sigmoid"`.
 */
export const dpo: Objective<DpoConfig> = {
  id: 'dpo',
  title: 'DPO (response preference in single-image contexts)',
  source: 'IC-VCO paper Eq. 4; trl/trainer/dpo_trainer.py dpo_loss (sigmoid)',
  defaults: () => ({ beta: 0.1, tokenMask: true }),
  requirements: (c) => singleKeys(c.tokenMask),
  build(inp, c): Built {
    const dirs = directions(inp.batch);
    const losses = dirs.map((d) => dpoLoss(margin(inp, d.sample, key(d.target, d.chosen), key(d.target, d.rejected)), c.beta));
    const loss = meanOf(losses);
    return {
      loss,
      terms: { dpo_loss: loss.value },
      metrics: rewardMetrics('', responseTraces(inp, dirs, c.beta)),
      directions: dirs.map((d, i) => ({ sample: d.sample, target: d.target, pos: d.pos, loss: losses[i].value })),
    };
  },
};

// ---------------------------------------------------------------- mDPO

export interface MdpoConfig {
  beta: number;
  delta: number;
  tokenMask: boolean;
}

/**
 * mDPO (Wang et al. 2024), luka-group/mDPO mdpo_trainer.py L102-123, mean at L200:
 *   -log σ(β h_response) - log σ(β[Δ(y_w|m) - Δ(y_w|m_neg)]) - log σ(β Δ(y_w|m) - δ),   Δ = log π - log π_ref
 * with weights 1:1:1 and δ = 0. mDPO's own negative image is a random 1-20% crop of m (RandomResizedCrop,
 * scale (0.01, 0.2)); on this format the contrastive image of the pair is the negative (m' for target m,
 * m for target m'), which is what the IC-VCO paper's comparison does with its shared data.
 */
export const mdpo: Objective<MdpoConfig> = {
  id: 'mdpo',
  title: 'mDPO (DPO + conditional image preference + anchor)',
  source: 'Wang et al. 2024, luka-group/mDPO mdpo_trainer.py L102-123',
  defaults: () => ({ beta: 0.1, delta: 0, tokenMask: true }),
  requirements: (c) => singleKeys(c.tokenMask),
  build(inp, c): Built {
    const dirs = directions(inp.batch);
    const dpoL: Scalar[] = [],
      copo: Scalar[] = [],
      anch: Scalar[] = [],
      per: Scalar[] = [];
    for (const d of dirs) {
      const b = d.sample;
      const l1 = dpoLoss(margin(inp, b, key(d.target, d.chosen), key(d.target, d.rejected)), c.beta);
      const l2 = dpoLoss(imageMargin(inp, b, d.chosen, d.target, d.other), c.beta);
      const l3 = anchorLoss(inp.logRatio(b, key(d.target, d.chosen)), c.beta, c.delta);
      dpoL.push(l1);
      copo.push(l2);
      anch.push(l3);
      per.push(l1.add(l2).add(l3));
    }
    const loss = meanOf(per);
    return {
      loss,
      terms: { dpo_loss: meanOf(dpoL).value, conditional_loss: meanOf(copo).value, anchor_loss: meanOf(anch).value },
      metrics: {
        ...rewardMetrics('', responseTraces(inp, dirs, c.beta)),
        ...rewardMetrics('image_', imageTraces(inp, dirs, c.beta)),
      },
      directions: dirs.map((d, i) => ({ sample: d.sample, target: d.target, pos: d.pos, loss: per[i].value })),
    };
  },
};

// ---------------------------------------------------------------- S-VCO-style visual DPO (image swap)

export interface VisDpoConfig {
  beta: number;
  tokenMask: boolean;
}

/**
 * Visual preference DPO with swapped images, the IC-VCO paper's Eq. 5 + Eq. 6 (the symmetric form of
 * S-VCO, Wu et al. 2025b, and of mDPO's conditional term):
 *   -log σ(β[Δ(y|m) - Δ(y|m')]) - log σ(β[Δ(y'|m') - Δ(y'|m)])
 * This is the partition-mismatch objective: its true form (Eq. 7) carries β·log Z(m,x)/Z(m',x), which
 * this loss drops (see partition.ts).
 */
export const visdpo: Objective<VisDpoConfig> = {
  id: 'visdpo',
  title: 'Visual DPO with swapped images (S-VCO-style, paper Eq. 5-6)',
  source: 'IC-VCO paper Eq. 5-6; Wu et al. 2025b (S-VCO)',
  defaults: () => ({ beta: 0.1, tokenMask: true }),
  requirements: (c) => singleKeys(c.tokenMask),
  build(inp, c): Built {
    const dirs = directions(inp.batch);
    const per = dirs.map((d) => dpoLoss(imageMargin(inp, d.sample, d.chosen, d.target, d.other), c.beta));
    // Eq. 5 + Eq. 6 per sample, mean over samples
    const loss = Scalar.linear(per.map((x) => [x, 1 / inp.size] as const));
    return {
      loss,
      terms: { visdpo_loss: loss.value },
      metrics: rewardMetrics('', imageTraces(inp, dirs, c.beta)),
      directions: dirs.map((d, i) => ({ sample: d.sample, target: d.target, pos: d.pos, loss: per[i].value })),
    };
  },
};

// ---------------------------------------------------------------- S-VCO (official, with the text-only reference)

export interface SvcoConfig {
  beta1: number;
  beta2: number;
  beta3: number;
  beta4: number;
  tokenMask: boolean;
}

/**
 * S-VCO as its official code computes it (s-vco/s-vco trainer.py L120-196, mean at L389): the prompt with
 * no image (x) is an intermediate reference, so each image-swap preference is split in two sigmoids:
 *   -log σ(β1[Δ(y|m) - Δ(y|x)]) - log σ(β2[Δ(y|x) - Δ(y|m')])          attend / reject, y
 *   -log σ(β3[Δ(y'|m') - Δ(y'|x)]) - log σ(β4[Δ(y'|x) - Δ(y'|m)])      attend / reject, y'
 * It needs the two text-only scores 'x|y' and "x|y'" besides the four single-image ones.
 */
export const svco: Objective<SvcoConfig> = {
  id: 'svco',
  title: 'S-VCO (attend/reject with a text-only intermediate reference)',
  source: 'Wu et al. 2025b, s-vco/s-vco trainer.py L120-196',
  defaults: () => ({ beta1: 0.1, beta2: 0.1, beta3: 0.1, beta4: 0.1, tokenMask: true }),
  requirements: (c) => [
    ...singleKeys(c.tokenMask),
    { key: 'x|y', mask: c.tokenMask ? 'span' : 'full' },
    { key: "x|y'", mask: c.tokenMask ? 'span' : 'full' },
  ],
  build(inp, c): Built {
    const dirs = directions(inp.batch);
    const attend: Scalar[] = [],
      reject: Scalar[] = [];
    for (const d of dirs) {
      const [ba, br] = d.target === 'm' ? [c.beta1, c.beta2] : [c.beta3, c.beta4];
      const txt = key('x', d.chosen);
      attend.push(dpoLoss(margin(inp, d.sample, key(d.target, d.chosen), txt), ba));
      reject.push(dpoLoss(margin(inp, d.sample, txt, key(d.other, d.chosen)), br));
    }
    const loss = Scalar.linear([...attend, ...reject].map((x) => [x, 1 / inp.size] as const));
    return {
      loss,
      terms: {
        attend_loss: Scalar.linear(attend.map((x) => [x, 1 / inp.size] as const)).value,
        reject_loss: Scalar.linear(reject.map((x) => [x, 1 / inp.size] as const)).value,
      },
      metrics: rewardMetrics('', imageTraces(inp, dirs, c.beta1)),
      directions: dirs.map((d, i) => ({
        sample: d.sample,
        target: d.target,
        pos: d.pos,
        attend: attend[i].value,
        reject: reject[i].value,
      })),
    };
  },
};

// ---------------------------------------------------------------- SymMPO

export interface SymMpoConfig {
  beta: number;
  beta2: number;
  lambda: number;
  marginWeight: number;
  tokenMask: boolean;
}

/**
 * SymMPO (Liu et al. 2025b), Liuwq-bit/SymMPO muffin/train/trainers.py L91-146, without its L_DPO_m term
 * (IC-VCO paper footnote 1 / App. C: it needs an extra rejected answer for m). What remains, per sample:
 *   λ[-log σ(β h1) - log σ(β h2)] - log σ(β Δ(y|m)) - log σ(β2 Δ(y'|m')) + w·(h1 - h2)²
 *   h1 = [Δ(y|m) - Δ(y'|m)],  h2 = [Δ(y'|m') - Δ(y|m')]     (response contrast under one image: Z cancels)
 * with λ = 0.5, β = β2 = 0.1 and the margin-consistency weight w = 1e-4 on raw (not β-scaled) margins.
 */
export const symmpo: Objective<SymMpoConfig> = {
  id: 'symmpo',
  title: 'SymMPO without L_DPO_m (symmetric preference + anchors + margin consistency)',
  source: 'Liu et al. 2025b, Liuwq-bit/SymMPO muffin/train/trainers.py L91-146',
  defaults: () => ({ beta: 0.1, beta2: 0.1, lambda: 0.5, marginWeight: 1e-4, tokenMask: true }),
  requirements: (c) => singleKeys(c.tokenMask),
  build(inp, c): Built {
    const sym: Scalar[] = [],
      anc: Scalar[] = [],
      cons: Scalar[] = [],
      per: Scalar[] = [];
    for (let b = 0; b < inp.size; b++) {
      const h1 = margin(inp, b, 'm|y', "m|y'");
      const h2 = margin(inp, b, "m'|y'", "m'|y");
      const s = dpoLoss(h1, c.beta).add(dpoLoss(h2, c.beta)).scale(c.lambda);
      const a = anchorLoss(inp.logRatio(b, 'm|y'), c.beta).add(anchorLoss(inp.logRatio(b, "m'|y'"), c.beta2));
      // h1 - h2 from the eight scores themselves, so huge inputs give a signed infinity, never Inf - Inf
      const diff = Scalar.linear(
        (
          [
            ['m|y', 1],
            ["m|y'", -1],
            ["m'|y'", -1],
            ["m'|y", 1],
          ] as const
        ).flatMap(
          ([k, sgn]) =>
            [
              [inp.pol(b, k), sgn],
              [inp.ref(b, k), -sgn],
            ] as const,
        ),
      );
      const m = diff.mul(diff).scale(c.marginWeight);
      sym.push(s);
      anc.push(a);
      cons.push(m);
      per.push(s.add(a).add(m));
    }
    const loss = meanOf(per);
    const dirs = directions(inp.batch);
    return {
      loss,
      terms: { symmetric_loss: meanOf(sym).value, anchor_loss: meanOf(anc).value, margin_consistency_loss: meanOf(cons).value },
      metrics: rewardMetrics('', responseTraces(inp, dirs, c.beta)),
      directions: dirs.map((d) => ({ sample: d.sample, target: d.target, pos: d.pos })),
    };
  },
};

// ---------------------------------------------------------------- V-DPO

export interface VdpoConfig {
  beta: number;
  gamma: number;
  responsePairs: boolean;
  tokenMask: boolean;
}

/**
 * V-DPO (Xie et al. 2024), YuxiXie/V-DPO llava_dpo/train/llava_trainer.py L572-771 with the guided log-prob
 * of llava_dpo/utils.py L314-319: l̃p(y|v) = γ·log π(y|v) - (γ-1)·sg[log π(y|v0)], v0 an all-zero image;
 * the reference stays unguided. Its pairs are of two kinds:
 *  - image contrast (same answer, v_w = target vs v_l = other image): the v0 terms cancel exactly, so
 *    -log σ(β[γ(log π(c|t) - log π(c|o)) - (log π_ref(c|t) - log π_ref(c|o))]) is expressible here for any γ;
 *  - response contrast (same image, y_w vs y_l): for γ ≠ 1 it needs log π(y|v0) under the zero image, which
 *    is not among these inputs; at γ = 1 it is plain DPO. So `responsePairs` requires γ = 1.
 */
export const vdpo: Objective<VdpoConfig> = {
  id: 'vdpo',
  title: 'V-DPO (vision-guided DPO; image-contrast pairs for any γ, response pairs at γ = 1)',
  source: 'Xie et al. 2024, YuxiXie/V-DPO llava_dpo/train/llava_trainer.py L572-771, utils.py L314-319',
  defaults: () => ({ beta: 0.1, gamma: 1, responsePairs: true, tokenMask: true }),
  requirements: (c) => singleKeys(c.tokenMask),
  build(inp, c): Built {
    if (c.responsePairs && c.gamma !== 1) {
      throw new Error(
        `V-DPO response-contrast pairs with gamma=${c.gamma} need log π(y | zero image), which these ` +
          'inputs do not carry: set gamma to 1 or responsePairs to false',
      );
    }
    const dirs = directions(inp.batch);
    const per: Scalar[] = [];
    for (const d of dirs) {
      const b = d.sample;
      const kt: SeqKey = key(d.target, d.chosen),
        ko: SeqKey = key(d.other, d.chosen);
      const guided = Scalar.linear([
        [inp.pol(b, kt), c.gamma],
        [inp.pol(b, ko), -c.gamma],
        [inp.ref(b, kt), -1],
        [inp.ref(b, ko), 1],
      ]);
      let l = dpoLoss(guided, c.beta);
      if (c.responsePairs) l = l.add(dpoLoss(margin(inp, b, kt, key(d.target, d.rejected)), c.beta));
      per.push(l);
    }
    const loss = meanOf(per);
    return {
      loss,
      terms: { vdpo_loss: loss.value },
      metrics: {
        ...rewardMetrics('', responseTraces(inp, dirs, c.beta)),
        ...rewardMetrics('image_', imageTraces(inp, dirs, c.beta)),
      },
      directions: dirs.map((d, i) => ({ sample: d.sample, target: d.target, pos: d.pos, loss: per[i].value })),
    };
  },
};
