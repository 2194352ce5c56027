import { describe, expect, it } from 'vitest';
import { partition } from '../../src/loss/index.js';
import { rng } from '../helpers.js';

const {
  crossContextPair,
  exampleWorld,
  imageSwapLosses,
  implicitRewards,
  logNormalise,
  logPartition,
  optimalLogProbs,
  sameContextPair,
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
