/**
 * Every objective and every ablation switch: dL/ds against central finite differences, closed forms
 * (policy == reference gives log 2 per DPO term), the documented differences between the two IC-VCO
 * presets, and no NaN for any finite input.
 */
import { describe, expect, it } from 'vitest';
import {
  OBJECTIVES,
  type PreferenceScores,
  SEQ_KEYS,
  type SeqKey,
  computeLoss,
  evaluate,
  icvco,
  icvcoConfig,
  logSigmoid,
  requiredSequences,
  softplus,
} from '../../src/loss/index.js';
import { rng } from '../helpers.js';

const LOG2 = Math.log(2);

/** a batch whose policy scores sit a few nats from the reference, so margins (and VCDist gates) vary */
function randomBatch(seed: number, B = 4, spread = 6): PreferenceScores[] {
  const r = rng(seed);
  return Array.from({ length: B }, (_, b) => {
    const policy: Record<string, number> = {},
      reference: Record<string, number> = {};
    for (const k of SEQ_KEYS) {
      reference[k] = -5 - 40 * r();
      policy[k] = reference[k] + spread * (r() - 0.5) * 2;
    }
    return { policy, reference, swap: b % 2 === 1 } as PreferenceScores;
  });
}

type Case = { name: string; spec: string; overrides: Record<string, unknown> };

const ICVCO_SWITCHES = ['singleBranch', 'multiBranch', 'vcdist', 'tokenMask', 'anchor', 'stopGradient', 'dualGating'];
const CASES: Case[] = [];
for (const preset of ['paper', 'reference-code']) {
  CASES.push({ name: `icvco:${preset}`, spec: `icvco:${preset}`, overrides: {} });
  for (const sw of ICVCO_SWITCHES)
    CASES.push({ name: `icvco:${preset} ${sw}=false`, spec: `icvco:${preset}`, overrides: { [sw]: false } });
  CASES.push({ name: `icvco:${preset} tau=0.3`, spec: `icvco:${preset}`, overrides: { tau: 0.3 } });
}
CASES.push({ name: 'icvco:reference-code delta=0.2', spec: 'icvco:reference-code', overrides: { delta: 0.2 } });
for (const id of ['dpo', 'mdpo', 'visdpo', 'svco', 'symmpo', 'vdpo']) {
  CASES.push({ name: id, spec: id, overrides: {} });
  CASES.push({ name: `${id} tokenMask=false`, spec: id, overrides: { tokenMask: false } });
}
CASES.push({ name: 'vdpo gamma=2 image pairs only', spec: 'vdpo', overrides: { gamma: 2, responsePairs: false } });
CASES.push({ name: 'mdpo delta=0.3', spec: 'mdpo', overrides: { delta: 0.3 } });
CASES.push({ name: 'symmpo lambda=1 marginWeight=0.01', spec: 'symmpo', overrides: { lambda: 1, marginWeight: 0.01 } });

/** the gate pattern of a batch: a finite-difference step must not cross a VCDist gate */
const gates = (spec: string, o: Record<string, unknown>, batch: PreferenceScores[]) =>
  computeLoss(spec, batch, o)
    .directions.map((d) => `${d.vcdist_active ?? ''}${d.vcdist_gate_pass ?? ''}`)
    .join();

describe('dL/ds equals central finite differences', () => {
  for (const c of CASES) {
    it(c.name, () => {
      let checked = 0;
      for (const seed of [1, 2, 3]) {
        const batch = randomBatch(seed * 17 + c.name.length);
        const res = computeLoss(c.spec, batch, c.overrides);
        const keys = requiredSequences(c.spec, c.overrides).map((r) => r.key);
        expect(keys.length).toBeGreaterThan(0);
        const g0 = gates(c.spec, c.overrides, batch);
        for (let b = 0; b < batch.length; b++) {
          for (const k of keys) {
            const h = 1e-5;
            const plus = structuredClone(batch),
              minus = structuredClone(batch);
            (plus[b].policy as Record<SeqKey, number>)[k] += h;
            (minus[b].policy as Record<SeqKey, number>)[k] -= h;
            if (gates(c.spec, c.overrides, plus) !== g0 || gates(c.spec, c.overrides, minus) !== g0) continue;
            // stop-gradient: the teacher's value moves with the multi-image scores but sends them no gradient,
            // so their derivative is that of the objective without the VCDist term
            const frozenTeacher = c.spec.startsWith('icvco') && c.overrides.stopGradient !== false && k.startsWith('M>');
            const o = frozenTeacher ? { ...c.overrides, vcdist: false } : c.overrides;
            const fd = (computeLoss(c.spec, plus, o).loss - computeLoss(c.spec, minus, o).loss) / (2 * h);
            const an = res.grads[b][k] ?? 0;
            expect(Math.abs(an - fd), `sample ${b} ${k}: analytic ${an} vs fd ${fd}`).toBeLessThan(1e-8 + 1e-6 * Math.abs(fd));
            checked++;
          }
        }
        // the gradient covers exactly the scores the objective asked for
        expect(Object.keys(res.grads[0]).sort()).toEqual([...new Set(keys)].sort());
      }
      expect(checked).toBeGreaterThan(20);
    });
  }
});

describe('closed forms', () => {
  const equal = (seed: number, B = 3): PreferenceScores[] =>
    randomBatch(seed, B).map((s) => ({ ...s, policy: { ...s.reference } }));

  it('policy == reference: every DPO and anchor term is log 2, and the totals follow', () => {
    const batch = equal(5);
    const paper = computeLoss('icvco:paper', batch);
    for (const t of ['single_loss', 'multi_loss', 'single_anchor_loss', 'multi_anchor_loss']) {
      expect(paper.terms[t]).toBeCloseTo(LOG2, 14);
    }
    // p_multi = 0.5 is not > τ = 0.5: VCDist is off; 5 log 2 = λ1(1+η1) + λ2(1+η2) at the paper defaults
    expect(paper.terms.vcdist_loss).toBe(0);
    expect(paper.loss).toBeCloseTo((0.75 * 2 + 1.75 * 2) * LOG2, 13);
    const code = computeLoss('icvco:reference-code', batch);
    // ½[λs(1+η) + λsA + λm(1+η) + λmA] log 2 = ½[3.5 + 1.75 + 1.5 + 0.75] log 2
    expect(code.loss).toBeCloseTo(0.5 * 7.5 * LOG2, 13);
    expect(computeLoss('dpo', batch).loss).toBeCloseTo(LOG2, 14);
    expect(computeLoss('mdpo', batch).loss).toBeCloseTo(3 * LOG2, 14);
    expect(computeLoss('visdpo', batch).loss).toBeCloseTo(2 * LOG2, 14); // Eq. 5 + Eq. 6
    expect(computeLoss('svco', batch).loss).toBeCloseTo(4 * LOG2, 14);
    expect(computeLoss('symmpo', batch).loss).toBeCloseTo(0.5 * 2 * LOG2 + 2 * LOG2, 14);
    expect(computeLoss('vdpo', batch).loss).toBeCloseTo(2 * LOG2, 14);
  });

  it('policy == reference: DPO gradient is ∓β/2 per pair, over 2B pairs', () => {
    const batch = equal(6, 2);
    const g = computeLoss('dpo', batch, { beta: 0.2 }).grads;
    for (const s of g) {
      // each score is the chosen of one pair and the rejected of none (single context): ±β σ(0) / 2B
      expect(s['m|y']).toBeCloseTo((-0.2 * 0.5) / 4, 15);
      expect(s["m|y'"]).toBeCloseTo((0.2 * 0.5) / 4, 15);
      expect(s["m'|y'"]).toBeCloseTo((-0.2 * 0.5) / 4, 15);
    }
  });

  it('the two IC-VCO presets differ exactly as documented', () => {
    for (const seed of [11, 12, 13, 14]) {
      const batch = randomBatch(seed, 5);
      const p = computeLoss('icvco:paper', batch);
      const c = computeLoss('icvco:reference-code', batch);
      // the unweighted branch means are the same numbers in both presets
      for (const t of ['single_loss', 'multi_loss', 'single_anchor_loss', 'multi_anchor_loss']) {
        expect(c.terms[t]).toBeCloseTo(p.terms[t], 14);
      }
      const { single_loss: Ls, multi_loss: Lm, single_anchor_loss: As, multi_anchor_loss: Am } = p.terms;
      const nActive = p.directions.filter((d) => d.vcdist_active === 1).length;
      const N = p.directions.length;
      // paper: λ1(Lm + η1 Am) + λ2(Ls + η2 As) + γ V, every term a mean over the 2B directions
      expect(p.loss).toBeCloseTo(0.75 * (Lm + Am) + 1.75 * (Ls + As) + 0.3 * p.terms.vcdist_loss, 12);
      // code: ½[λs Ls + (λs η + λsA) As + γ V + λm Lm + (λm η + λmA) Am]: the anchor counted twice
      expect(c.loss).toBeCloseTo(
        0.5 * (1.75 * Ls + (1.75 + 1.75) * As + 0.4 * c.terms.vcdist_loss + 0.75 * Lm + (0.75 + 0.75) * Am),
        12,
      );
      // VCDist: paper averages over all directions, code over the active ones
      expect(c.terms.vcdist_loss * nActive).toBeCloseTo(p.terms.vcdist_loss * N, 12);
      // the logged invariant of the official code
      expect(c.terms.loss_combined).toBeCloseTo(
        0.5 *
          (c.terms.loss_single_weighted +
            c.terms.loss_multi_weighted +
            c.terms.loss_anchor_weighted +
            c.terms.loss_vcdist_weighted),
        12,
      );
      // the gates are the same in both
      expect(c.directions.map((d) => d.vcdist_active)).toEqual(p.directions.map((d) => d.vcdist_active));
    }
  });

  it('reference-code without the explicit anchor weights and VCDist is half the paper objective', () => {
    const batch = randomBatch(21, 4);
    const p = computeLoss('icvco:paper', batch, { gamma: 0 });
    const c = computeLoss('icvco:reference-code', batch, { gamma: 0, lambda_sA: 0, lambda_mA: 0 });
    expect(c.loss).toBeCloseTo(p.loss / 2, 13);
    c.grads.forEach((g, b) => {
      for (const k of Object.keys(g) as SeqKey[]) expect(g[k]).toBeCloseTo(p.grads[b][k]! / 2, 14);
    });
  });

  it('some directions are active in the random batches, and VCDist only pushes the student up', () => {
    const batch = randomBatch(31, 8);
    const only = { lambda1: 0, lambda2: 0, eta1: 0, eta2: 0, gamma: 1 };
    const r = computeLoss('icvco:paper', batch, only);
    const active = r.directions.filter((d) => d.vcdist_active === 1);
    expect(active.length).toBeGreaterThan(0);
    expect(active.length).toBeLessThan(r.directions.length);
    for (const d of r.directions) {
      const chosen = d.target === 'm' ? 'y' : "y'";
      const g = r.grads[d.sample][`${d.target}|${chosen}` as SeqKey]!;
      if (d.vcdist_active === 1) expect(g).toBeLessThan(0);
      else expect(Math.abs(g)).toBeLessThan(1e-300 + Math.abs(g));
      // stop-gradient: no gradient reaches the teacher's scores
      expect(r.grads[d.sample][`M>${d.target}|${chosen}` as SeqKey]).toBe(0);
    }
    const free = computeLoss('icvco:paper', batch, { ...only, stopGradient: false });
    expect(free.loss).toBeCloseTo(r.loss, 14); // same value...
    const moved = free.directions.some(
      (d) => free.grads[d.sample][`M>${d.target}|${d.target === 'm' ? 'y' : "y'"}` as SeqKey] !== 0,
    );
    expect(moved).toBe(true); // ...but the teacher now gets gradient
  });

  it('dual gating off distils on every direction; τ moves the correctness gate', () => {
    const batch = randomBatch(41, 6);
    const all = computeLoss('icvco:paper', batch, { dualGating: false });
    expect(all.directions.every((d) => d.vcdist_active === 1)).toBe(true);
    expect(all.metrics.vcdist_active_rate).toBe(1);
    const lo = computeLoss('icvco:paper', batch, { tau: 0 }).metrics.vcdist_gate_pass_rate;
    const hi = computeLoss('icvco:paper', batch, { tau: 0.99 }).metrics.vcdist_gate_pass_rate;
    expect(lo).toBe(1);
    expect(hi).toBe(0);
  });

  it('token mask off asks the engine for whole-response single-image scores', () => {
    expect(
      requiredSequences('icvco', {})
        .filter((r) => r.mask === 'span')
        .map((r) => r.key)
        .sort(),
    ).toEqual(['m|y', "m|y'", "m'|y", "m'|y'"].sort());
    expect(requiredSequences('icvco', { tokenMask: false }).every((r) => r.mask === 'full')).toBe(true);
    expect(
      requiredSequences('icvco', { singleBranch: false })
        .map((r) => r.key)
        .every((k) => k.startsWith('M>')),
    ).toBe(true);
  });

  it('TRL metric names, accuracies strict, positions split by the swap flag', () => {
    const batch = randomBatch(51, 4);
    const r = computeLoss('icvco', batch);
    for (const m of [
      'single_rewards/chosen',
      'single_rewards/rejected',
      'single_rewards/margins',
      'single_rewards/accuracies',
      'multi_pos1_rewards/accuracies',
      'multi_pos2_rewards/margins',
      'vcdist_teacher_prob',
      'vcdist_student_prob',
      'vcdist_teacher_acc',
      'vcdist_gate_pass_rate',
      'vcdist_trigger_rate',
      'vcdist_correctness_blocked_rate',
      'vcdist_confidence_blocked_rate',
      'vcdist_valid_kl',
      'vcdist_active_kl',
    ]) {
      expect(r.metrics[m], m).toBeTypeOf('number');
    }
    const m = r.metrics;
    expect(m.vcdist_gate_pass_rate + m.vcdist_correctness_blocked_rate).toBeCloseTo(1, 15);
    expect(m.vcdist_trigger_rate + m.vcdist_confidence_blocked_rate).toBeCloseTo(m.vcdist_gate_pass_rate, 15);
    expect(m['multi_rewards/margins']).toBeCloseTo(m['multi_rewards/chosen'] - m['multi_rewards/rejected'], 14);
    // swap puts m' first: the target-m' direction of a swapped sample is pos1
    const swapped = r.directions.filter((d) => d.sample === 1);
    expect(swapped.find((d) => d.target === "m'")!.pos).toBe(1);
    expect(r.directions.filter((d) => d.pos === 1).length).toBe(4);
    const tie = computeLoss(
      'dpo',
      batch.map((s) => ({ ...s, policy: { ...s.reference } })),
    );
    expect(tie.metrics['rewards/accuracies']).toBe(0);
  });

  it('V-DPO says what it cannot express', () => {
    expect(() => computeLoss('vdpo', randomBatch(1), { gamma: 2 })).toThrow(/zero image/);
  });
});

describe('robustness', () => {
  it('stable log-sigmoid and softplus at the extremes', () => {
    expect(logSigmoid(-1000)).toBe(-1000);
    expect(logSigmoid(1000)).toBe(-0);
    expect(logSigmoid(-30)).toBeCloseTo(-30 - Math.exp(-30), 15);
    expect(softplus(800)).toBe(800);
    expect(softplus(-800)).toBeGreaterThanOrEqual(0);
  });

  it('no NaN anywhere for any finite input, however large', () => {
    const r = rng(99);
    const specs = CASES.filter((c) => !(c.spec === 'vdpo' && c.overrides.gamma));
    for (let trial = 0; trial < 30; trial++) {
      const mag = 10 ** (300 * r());
      const batch = Array.from({ length: 3 }, () => {
        const policy: Record<string, number> = {},
          reference: Record<string, number> = {};
        for (const k of SEQ_KEYS) {
          policy[k] = (r() - 0.5) * 2 * mag * (r() < 0.3 ? 1 : r());
          reference[k] = r() < 0.2 ? policy[k] : (r() - 0.5) * 2 * mag;
        }
        return { policy, reference, swap: r() < 0.5 } as PreferenceScores;
      });
      for (const c of specs) {
        const res = computeLoss(c.spec, batch, c.overrides);
        const all = [
          res.loss,
          ...Object.values(res.terms),
          ...Object.values(res.metrics),
          ...res.grads.flatMap((g) => Object.values(g) as number[]),
          ...res.directions.flatMap((d) => Object.values(d).filter((x): x is number => typeof x === 'number')),
        ];
        const nan = all.findIndex((x) => Number.isNaN(x));
        expect(nan, `${c.name} trial ${trial} magnitude ${mag.toExponential(1)}`).toBe(-1);
      }
    }
  });

  it('missing or non-finite scores are refused with the sample and key named', () => {
    const batch = randomBatch(3, 2);
    delete batch[1].reference["M>m'|y"];
    expect(() => computeLoss('icvco', batch)).toThrow(/sample 1: reference score "M>m'\|y" is missing/);
    const b2 = randomBatch(3, 2);
    b2[0].policy['m|y'] = NaN;
    expect(() => computeLoss('icvco', b2)).toThrow(/sample 0: policy score "m\|y" is NaN/);
    expect(() => computeLoss('icvco', [])).toThrow(/empty batch/);
    expect(() => computeLoss('nope', b2)).toThrow(/unknown objective "nope": choose one of icvco/);
    expect(() => computeLoss('dpo', randomBatch(1), { lambda1: 2 })).toThrow(/has no setting "lambda1"/);
  });

  it('every registered objective has a source and runs with its defaults', () => {
    for (const [id, o] of Object.entries(OBJECTIVES)) {
      expect(o.source.length, id).toBeGreaterThan(10);
      expect(Number.isFinite(evaluate(o, o.defaults(), randomBatch(7)).loss)).toBe(true);
    }
    expect(icvco.defaults()).toEqual(icvcoConfig('paper'));
  });
});
