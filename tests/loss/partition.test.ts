import { describe, expect, it } from 'vitest';
import { partition } from '../../src/loss/index.js';
import { rng } from '../helpers.js';

const {
  TOY_PRESETS,
  ToyTrainer,
  crossContextPair,
  directionTheory,
  exampleWorld,
  imageSwapLosses,
  implicitRewards,
  logNormalise,
  logPartition,
  optimalLogProbs,
  optimalSampleMargins,
  partitionTerms,
  sameContextPair,
  sharedContext,
  splitMarginGap,
  toyPreset,
  toyWorld,
} = partition;

function randomContext(r: () => number, n: number, label: string): partition.ToyContext {
  return {
    label,
    refLogits: Array.from({ length: n }, () => 3 * (r() - 0.5)),
    rewards: Array.from({ length: n }, () => 2 * (r() - 0.5)),
  };
}

describe('partition-function toy math', () => {
  it('log Z is the brute-force sum of Eq. 2', () => {
    const r = rng(1);
    for (let t = 0; t < 20; t++) {
      const ctx = randomContext(r, 2 + Math.floor(6 * r()), 'c');
      const beta = 0.05 + r();
      const ref = ctx.refLogits.map(Math.exp);
      const tot = ref.reduce((a, x) => a + x, 0);
      let z = 0;
      for (let i = 0; i < ref.length; i++) z += (ref[i] / tot) * Math.exp(ctx.rewards[i] / beta);
      expect(logPartition(ctx, beta)).toBeCloseTo(Math.log(z), 10);
    }
  });

  it('π* is a distribution and its implicit reward is r - β log Z (Eq. 1)', () => {
    const r = rng(2);
    const ctx = randomContext(r, 5, 'c');
    const beta = 0.3;
    const pstar = optimalLogProbs(ctx, beta);
    expect(pstar.reduce((a, l) => a + Math.exp(l), 0)).toBeCloseTo(1, 14);
    const implicit = implicitRewards(pstar, ctx, beta);
    const lz = logPartition(ctx, beta);
    implicit.forEach((v, i) => expect(v).toBeCloseTo(ctx.rewards[i] - beta * lz, 12));
  });

  it('a response preference inside one context has no residual, however different the Z', () => {
    const r = rng(3);
    for (let t = 0; t < 20; t++) {
      const ctx = randomContext(r, 4, 'c');
      const a = sameContextPair(ctx, 0.1, 0, 1);
      expect(Math.abs(a.residual)).toBeLessThan(1e-12);
      expect(a.implicitMargin).toBeCloseTo(a.trueMargin, 12);
      expect(a.boundaryShift).toBe(a.residual);
    }
  });

  it("an image-swap preference carries exactly β log Z(m)/Z(m') (Eq. 7-8)", () => {
    const r = rng(4);
    let nonzero = 0;
    for (let t = 0; t < 20; t++) {
      const a = randomContext(r, 4, 'm'),
        b = randomContext(r, 4, "m'");
      const beta = 0.1;
      const p = crossContextPair(a, b, beta, 0);
      expect(p.trueMargin - p.implicitMargin).toBeCloseTo(p.residual, 12);
      expect(p.residual).toBeCloseTo(beta * Math.log(Math.exp(logPartition(a, beta)) / Math.exp(logPartition(b, beta))), 10);
      if (Math.abs(p.residual) > 1e-3) nonzero++;
    }
    expect(nonzero).toBeGreaterThan(15);
    // the same context on both sides (IC-VCO's shared (M, x̂)): the residual is exactly zero
    const m = randomContext(r, 4, 'M');
    expect(crossContextPair(m, m, 0.1, 2).residual).toBe(0);
  });

  it('the residual flips decisions: true preference, wrong implicit classifier', () => {
    const w = exampleWorld();
    const p = crossContextPair(w.m, w.mPrime, w.beta, 0);
    expect(p.residual).not.toBeCloseTo(0, 3);
    // scan the reward of "red" in m: somewhere the true preference and the implicit classifier disagree
    // (Z moves with the reward, so the boundary is found by search, not set by hand)
    let flipped = 0;
    for (let r0 = -2; r0 <= 2; r0 += 0.001) {
      const m = { ...w.m, rewards: [r0, ...w.m.rewards.slice(1)] };
      const q = crossContextPair(m, w.mPrime, w.beta, 0);
      if ((q.pTrue - 0.5) * (q.pImplicit - 0.5) < 0) {
        flipped++;
        expect(Math.abs(q.trueMargin)).toBeLessThanOrEqual(Math.abs(q.boundaryShift) + 1e-12);
      }
    }
    expect(flipped).toBeGreaterThan(0);
  });

  it('at π = π*, the consistent loss is Bradley-Terry on the true rewards and the biased one is not', () => {
    const w = exampleWorld();
    const pa = optimalLogProbs(w.m, w.beta),
      pb = optimalLogProbs(w.mPrime, w.beta);
    const l = imageSwapLosses(pa, pb, w.m, w.mPrime, w.beta, 0);
    const trueMargin = w.m.rewards[0] - w.mPrime.rewards[0];
    expect(l.consistent).toBeCloseTo(Math.log1p(Math.exp(-trueMargin)), 12);
    expect(l.biased).toBeCloseTo(Math.log1p(Math.exp(-(trueMargin - l.residual))), 12);
    expect(Math.abs(l.biased - l.consistent)).toBeGreaterThan(1e-3);
  });

  it('refuses a toy whose responses and rewards disagree', () => {
    expect(() => logPartition({ label: 'bad', refLogits: [0, 1], rewards: [1] }, 0.1)).toThrow(/toy context "bad"/);
    logNormalise([1, 1]).forEach((l) => expect(Math.exp(l)).toBeCloseTo(0.5, 15));
  });
});

// ---------------------------------------------------------------- the explainer's world and its training

/** plain-loop versions of Eq. 2 and Eq. 1, written without the module's helpers */
function bruteRef(weights: number[]): number[] {
  const tot = weights.reduce((a, w) => a + w, 0);
  return weights.map((w) => w / tot);
}
function bruteZ(ref: number[], rewards: number[], beta: number): number {
  let z = 0;
  for (let i = 0; i < ref.length; i++) z += ref[i] * Math.exp(rewards[i] / beta);
  return z;
}
function brutePiStar(ref: number[], rewards: number[], beta: number): number[] {
  const z = bruteZ(ref, rewards, beta);
  return ref.map((p, i) => (p * Math.exp(rewards[i] / beta)) / z);
}
const sig = (x: number) => 1 / (1 + Math.exp(-x));

function randomSettings(r: () => number, n = 4): partition.ToySettings {
  const vec = (f: () => number) => Array.from({ length: n }, f);
  return {
    refWeights: { m: vec(() => 0.02 + r()), mPrime: vec(() => 0.02 + r()) },
    rewards: { m: vec(() => 3 * (r() - 0.5)), mPrime: vec(() => 3 * (r() - 0.5)) },
    beta: 0.2 + r(),
    leak: r(),
  };
}

describe('the explainer: closed forms', () => {
  it('π* of every context normalises and is each term of Z, over Z (Eq. 1-2)', () => {
    const r = rng(11);
    for (let t = 0; t < 20; t++) {
      const s = randomSettings(r);
      const w = toyWorld(s);
      const refs = { m: bruteRef(s.refWeights.m), mPrime: bruteRef(s.refWeights.mPrime) };
      for (const [ctx, ref, rew] of [
        [w.m, refs.m, s.rewards.m],
        [w.mPrime, refs.mPrime, s.rewards.mPrime],
      ] as const) {
        const pstar = optimalLogProbs(ctx, w.beta).map(Math.exp);
        expect(pstar.reduce((a, x) => a + x, 0)).toBeCloseTo(1, 14);
        const brute = brutePiStar(ref, rew, w.beta);
        pstar.forEach((p, i) => expect(p).toBeCloseTo(brute[i], 12));
        const { terms, logZ } = partitionTerms(ctx, w.beta);
        expect(logZ).toBeCloseTo(Math.log(bruteZ(ref, rew, w.beta)), 11);
        terms.forEach((term, i) => {
          expect(term.ref).toBeCloseTo(ref[i], 14);
          expect(Math.exp(term.logTerm)).toBeCloseTo(ref[i] * Math.exp(rew[i] / w.beta), 8);
          expect(term.share).toBeCloseTo(brute[i], 12);
        });
      }
      // the shared context's reference is the stated mixture, and its π* normalises too
      for (const target of ['m', "m'"] as const) {
        const [a, b] = target === 'm' ? [refs.m, refs.mPrime] : [refs.mPrime, refs.m];
        const sc = sharedContext(w, target);
        logNormalise(sc.refLogits).forEach((l, i) => expect(Math.exp(l)).toBeCloseTo((1 - s.leak) * a[i] + s.leak * b[i], 13));
        expect(optimalLogProbs(sc, w.beta).reduce((acc, l) => acc + Math.exp(l), 0)).toBeCloseTo(1, 14);
      }
    }
  });

  it('image swap: the residual is the true margin minus the implicit margin at π*, and β log Z(m)/Z(m′) (Eq. 7-8)', () => {
    const r = rng(12);
    for (let t = 0; t < 20; t++) {
      const s = randomSettings(r);
      const w = toyWorld(s);
      const b = w.beta;
      const refM = bruteRef(s.refWeights.m),
        refMp = bruteRef(s.refWeights.mPrime);
      const pm = brutePiStar(refM, s.rewards.m, b),
        pmp = brutePiStar(refMp, s.rewards.mPrime, b);
      const logZratio = Math.log(bruteZ(refM, s.rewards.m, b) / bruteZ(refMp, s.rewards.mPrime, b));
      const [dm, dmp] = directionTheory(w, 'visdpo');
      // target m: y under m against y under m′; target m′: y′ under m′ against y′ under m
      const implicitM = b * Math.log(pm[0] / refM[0]) - b * Math.log(pmp[0] / refMp[0]);
      const implicitMp = b * Math.log(pmp[1] / refMp[1]) - b * Math.log(pm[1] / refM[1]);
      expect(dm.trueMargin).toBeCloseTo(s.rewards.m[0] - s.rewards.mPrime[0], 14);
      expect(dmp.trueMargin).toBeCloseTo(s.rewards.mPrime[1] - s.rewards.m[1], 14);
      expect(dm.residual).toBeCloseTo(b * logZratio, 10);
      expect(dmp.residual).toBeCloseTo(-b * logZratio, 10);
      expect(dm.trueMargin - dm.optimum).toBeCloseTo(dm.residual, 12);
      expect(dm.optimum).toBeCloseTo(implicitM, 10);
      expect(dmp.optimum).toBeCloseTo(implicitMp, 10);
      expect(dm.boundary).toBe(-dm.residual);
      expect(dm.pData).toBeCloseTo(sig(dm.trueMargin), 14);
    }
  });

  it('the shared context: the residual is exactly 0 for any reference mixture, and π* fits the true margin', () => {
    const r = rng(13);
    for (let t = 0; t < 20; t++) {
      const s = randomSettings(r);
      const w = toyWorld(s);
      const th = directionTheory(w, 'icvco');
      for (const [d, target] of [
        [th[0], 'm'],
        [th[1], "m'"],
      ] as const) {
        expect(d.residual).toBe(0);
        const sc = sharedContext(w, target);
        expect(crossContextPair(sc, sc, w.beta, 0).residual).toBe(0);
        // brute force on the mixture: β log π*/π_ref of the faithful answer minus the other one's
        const ref = logNormalise(sc.refLogits).map(Math.exp);
        const ps = brutePiStar(ref, sc.rewards, w.beta);
        const [c, o] = target === 'm' ? [0, 1] : [1, 0];
        const implicit = w.beta * Math.log(ps[c] / ref[c]) - w.beta * Math.log(ps[o] / ref[o]);
        const rew = target === 'm' ? s.rewards.m : s.rewards.mPrime;
        expect(d.trueMargin).toBeCloseTo(rew[c] - rew[o], 14);
        expect(implicit).toBeCloseTo(d.trueMargin, 10);
        expect(d.optimum).toBe(d.trueMargin);
      }
    }
  });

  it('the presets: the mirror has no residual, the prior a moderate one, the hard image flips the preference', () => {
    const mirror = directionTheory(toyWorld(toyPreset('mirror').settings), 'visdpo');
    expect(Math.abs(mirror[0].residual)).toBeLessThan(1e-12);
    const prior = directionTheory(toyWorld(toyPreset('prior').settings), 'visdpo');
    expect(prior[0].residual).toBeLessThan(-0.1);
    expect(prior[0].trueMargin + prior[0].residual).toBeGreaterThan(0);
    const wrong = directionTheory(toyWorld(toyPreset('wrong').settings), 'visdpo')[0];
    expect(wrong.trueMargin).toBeGreaterThan(0);
    expect(-wrong.residual).toBeGreaterThan(wrong.trueMargin);
    for (const p of TOY_PRESETS) expect(() => toyWorld(p.settings)).not.toThrow();
    expect(() => toyPreset('nope')).toThrow(/unknown toy preset "nope"/);
  });
});

describe('the explainer: training a toy policy with the loss module', () => {
  /** the expected loss over Bradley–Terry labels, written from the paper's formulas (not through the loss module) */
  function expectedLoss(tr: partition.ToyTrainer, theta: Map<partition.ToyCtx, number[]>): number {
    const w = tr.world,
      b = w.beta;
    const lp = (c: partition.ToyCtx) => logNormalise(theta.get(c)!);
    const ref = (c: partition.ToyCtx) => logNormalise(partition.toyContext(w, c).refLogits);
    const lr = (c: partition.ToyCtx, i: number) => lp(c)[i] - ref(c)[i];
    const sp = (x: number) => Math.log1p(Math.exp(x));
    const pair = (h: number, p: number) => p * sp(-b * h) + (1 - p) * sp(b * h);
    const [d0, d1] = tr.theory;
    if (tr.objective === 'visdpo') {
      // Eq. 5 + Eq. 6, per sample
      return pair(lr('m', 0) - lr("m'", 0), d0.pData) + pair(lr("m'", 1) - lr('m', 1), d1.pData);
    }
    // Eq. 9 per anchor, weighted as the paper preset's multi-image branch: ½·λ1 = 0.375
    return 0.375 * (pair(lr('M>m', 0) - lr('M>m', 1), d0.pData) + pair(lr("M>m'", 1) - lr("M>m'", 0), d1.pData));
  }

  it("the update is the gradient of the expected loss: the loss module's dL/ds through log-softmax", () => {
    const r = rng(21);
    for (const objective of ['visdpo', 'icvco'] as const) {
      const tr = new ToyTrainer(toyWorld(randomSettings(r)), objective);
      // move off the reference first, so that no margin is 0
      for (const th of tr.logits.values()) th.forEach((_, k) => (th[k] += r() - 0.5));
      const g = tr.gradient();
      const eps = 1e-6;
      for (const [ctx, th] of tr.logits) {
        for (let k = 0; k < th.length; k++) {
          const at = (d: number) => {
            const copy = new Map([...tr.logits].map(([c, v]) => [c, [...v]]));
            copy.get(ctx)![k] += d;
            return expectedLoss(tr, copy);
          };
          expect(g.get(ctx)![k]).toBeCloseTo((at(eps) - at(-eps)) / (2 * eps), 7);
        }
      }
    }
  });

  it('converges to the analytic fixed point of each objective: βh = the true margin, σ(βh) = P(win)', () => {
    const r = rng(22);
    const worlds = [...TOY_PRESETS.map((p) => p.settings), ...Array.from({ length: 6 }, () => randomSettings(r))];
    for (const s of worlds) {
      const w = toyWorld(s);
      for (const objective of ['visdpo', 'icvco'] as const) {
        const tr = new ToyTrainer(w, objective);
        tr.step(3000);
        const got = tr.margins();
        const th = directionTheory(w, objective);
        // independent closed form: the logistic loss is stationary where σ(βh) equals the label probability
        const [c0, c1] =
          objective === 'visdpo'
            ? [s.rewards.m[0] - s.rewards.mPrime[0], s.rewards.mPrime[1] - s.rewards.m[1]]
            : [s.rewards.m[0] - s.rewards.m[1], s.rewards.mPrime[1] - s.rewards.mPrime[0]];
        expect(Math.abs(got[0] - c0)).toBeLessThan(1e-6);
        expect(Math.abs(got[1] - c1)).toBeLessThan(1e-6);
        expect(Math.abs(sig(got[0]) - th[0].pData)).toBeLessThan(1e-6);
        // and where that is relative to the reward-maximising policy π*: the residual away for image swap, on it
        // for the shared context
        expect(Math.abs(got[0] - th[0].optimum - th[0].residual)).toBeLessThan(1e-6);
        if (objective === 'icvco') expect(Math.abs(got[0] - th[0].optimum)).toBeLessThan(1e-6);
      }
    }
  });

  it('the hard-image preset: image-swap DPO ends on the wrong side of the true boundary, IC-VCO on the right one', () => {
    const w = toyWorld(toyPreset('wrong').settings);
    const swap = new ToyTrainer(w, 'visdpo'),
      shared = new ToyTrainer(w, 'icvco');
    swap.step(1500);
    shared.step(1500);
    const [ds] = swap.theory,
      [dc] = shared.theory;
    // the data prefer m for y; what the trained policy says, read through Eq. 7, is p = σ(βh + residual)
    expect(ds.pData).toBeGreaterThan(0.5);
    expect(sig(swap.margins()[0] + ds.residual)).toBeLessThan(0.5);
    expect(swap.margins()[0]).toBeLessThan(ds.boundary);
    // the same sample in the shared context: y over y′ under the anchor on m, no residual
    expect(dc.pData).toBeGreaterThan(0.5);
    expect(sig(shared.margins()[0] + dc.residual)).toBeGreaterThan(0.5);
    expect(shared.margins()[0]).toBeGreaterThan(dc.boundary);
  });

  it('sampled pairs: the same seed gives the same path, and it hovers around the fixed point', () => {
    const w = toyWorld(toyPreset('prior').settings);
    const a = new ToyTrainer(w, 'visdpo', { pairs: 16, seed: 5 }),
      b = new ToyTrainer(w, 'visdpo', { pairs: 16, seed: 5 });
    a.step(300);
    b.step(300);
    expect(a.margins()).toEqual(b.margins());
    let mean = 0;
    for (let i = 0; i < 400; i++) {
      a.step();
      mean += a.margins()[0] / 400;
    }
    expect(Math.abs(mean - a.theory[0].fixedPoint)).toBeLessThan(0.15);
    expect(() => new ToyTrainer(w, 'visdpo', { pairs: 0 })).toThrow(/pairs must be/);
  });
});

describe('the explainer: a real sample read through the toy', () => {
  it('at the toy π*, the gap between shared-context and image-swap margins is the residual (plus the wrong answers’ asymmetry)', () => {
    for (const id of ['prior', 'wrong', 'mirror']) {
      const s = toyPreset(id).settings;
      const w = toyWorld(s);
      const [a, b] = optimalSampleMargins(w);
      const split = splitMarginGap(a, b, w.beta);
      const rho =
        w.beta *
        Math.log(
          bruteZ(bruteRef(s.refWeights.m), s.rewards.m, w.beta) / bruteZ(bruteRef(s.refWeights.mPrime), s.rewards.mPrime, w.beta),
        );
      // r(m′, y) − r(m, y′): 0 when a wrong answer is as wrong in either image
      const asym = s.rewards.mPrime[0] - s.rewards.m[1];
      expect(split.partition).toBeCloseTo(rho + asym, 10);
      expect(Math.abs(split.unexplained)).toBeLessThan(1e-12);
      expect(split.differences[0]).toBeCloseTo(rho + asym, 10);
      expect(split.differences[1]).toBeCloseTo(-(rho + asym), 10);
      if (id === 'prior') expect(split.partition).toBeCloseTo(rho, 12);
      if (Math.abs(split.partition) > 1e-9) expect(split.explained).toBeCloseTo(1, 12);
    }
  });

  it('splits any pair of gaps into its antisymmetric and symmetric parts', () => {
    // gaps β(h_multi − h_swap) of 0.3 and 0.1 at β = 0.5: partition (0.3 − 0.1)/2, the rest (0.3 + 0.1)/2
    const s = splitMarginGap({ imageSwap: 1, shared: 1.6 }, { imageSwap: -0.4, shared: -0.2 }, 0.5);
    expect(s.differences[0]).toBeCloseTo(0.3, 14);
    expect(s.differences[1]).toBeCloseTo(0.1, 14);
    expect(s.partition).toBeCloseTo(0.1, 14);
    expect(s.unexplained).toBeCloseTo(0.2, 14);
    expect(s.explained).toBeCloseTo(0.01 / 0.05, 12);
    expect(splitMarginGap({ imageSwap: 0, shared: 0 }, { imageSwap: 0, shared: 0 }, 0.1).explained).toBeNaN();
  });
});
