/**
 * `vco-lab toy-paper` at a tiny budget on the shipped default model: both kinds of negatives built from the
 * same seed tuples, LoRA runs of several methods (S-VCO among them, which scores the text-only context x on
 * the engine) and an ablation over two seeds, the benchmark and the held-out yardstick after each run, mean
 * and sd over the seeds, the SVG figures, and a command line that refuses what it cannot run.
 */
import { describe, expect, it } from 'vitest';
import { shapesworldSet } from '../../src/data/sets.js';
import { shapesworldSamples } from '../../src/engine/datasets.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { meanSd, mergeToyResults, toyFigures, toyPaper, toySet } from '../../src/node/toy-paper.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { cli } from '../helpers.js';

describe('toy-paper', () => {
  it("edited and synthetic negatives share m, y and y'; only m' differs", async () => {
    const rt = await createNodeRuntime('cpu');
    const m = await loadModelDir(rt, DEFAULT_MODEL_DIR);
    const o = { pairs: 6, priorShare: 0.5 };
    const [e, s] = (['edited', 'synthetic'] as const).map((n) => shapesworldSamples(m, shapesworldSet(toySet(o, 3, n))));
    for (let i = 0; i < o.pairs; i++) {
      expect(s[i].responses).toEqual(e[i].responses);
      expect(s[i].spanMasks).toEqual(e[i].spanMasks);
      expect(s[i].images.m).toEqual(e[i].images.m);
      expect(s[i].images["m'"]).not.toEqual(e[i].images["m'"]);
      expect(e[i].spanMasks.y.some((x) => x === 1) || e[i].spanMasks["y'"].some((x) => x === 1)).toBe(true);
    }
    // pairs about the planted prior: the rejected answer is the prior's (a yellow star)
    const prior = shapesworldSet(toySet(o, 3, 'edited')).filter((x) => x.kind === 'prior');
    expect(prior.length).toBe(3);
    for (const p of prior) expect(p.sample.rejected).toContain('yellow star');
    await m.engine.release();
  });

  it('mean and sample sd over seeds', () => {
    expect(meanSd([1, 2, 3, 4])).toEqual({ mean: 2.5, sd: Math.sqrt(5 / 3), n: 4 });
    expect(meanSd([7])).toEqual({ mean: 7, sd: 0, n: 1 });
  });

  it('runs methods and an ablation over two seeds; benchmark, held-out yardstick, mean ± sd, figures', async () => {
    const rt = await createNodeRuntime('cpu');
    const r = await toyPaper(rt, {
      modelDir: DEFAULT_MODEL_DIR,
      pairs: 8,
      steps: 8,
      batch: 2,
      lr: 1e-2,
      rank: 4,
      perCategory: 8,
      heldOut: 4,
      seeds: [5, 6],
      priorShare: 0.25,
      methods: ['dpo', 'svco', 'icvco:paper', 'icvco:paper/no-anchor'],
      ablations: false,
    });
    expect(r.schema).toBe('vco-lab/toy-paper@2');
    const names = r.runs.map((x) => `${x.seed} ${x.method}/${x.negatives}`);
    expect(names.slice(0, 7)).toEqual([
      '5 dpo/edited',
      '5 svco/edited',
      '5 icvco:paper/edited',
      '5 dpo/synthetic',
      '5 svco/synthetic',
      '5 icvco:paper/synthetic',
      '5 icvco:paper/no-anchor/edited',
    ]);
    expect(r.runs.length).toBe(14);
    for (const x of r.runs) {
      expect(Object.keys(x.benchmark)).toEqual(['existence', 'attribute', 'relation', 'trap', 'two-image']);
      for (const v of Object.values(x.held_out_accuracy)) expect(v >= 0 && v <= 1).toBe(true);
      for (const v of Object.values(x.train_accuracy_last_quarter)) expect(v >= 0 && v <= 1).toBe(true);
      expect(x.curve.length).toBe(8);
      // LoRA B starts at zero: the first DPO step sees policy = reference, loss exactly log 2; in the second
      // epoch (the last quarter's steps revisit trained pairs) it is below that
      if (x.method === 'dpo') {
        expect(x.curve[0].loss).toBeCloseTo(Math.log(2), 6);
        expect(x.loss_last_quarter).toBeLessThan(Math.log(2));
      }
    }
    const ic = r.runs.find((x) => x.method === 'icvco:paper')!;
    expect(Object.keys(ic.train_accuracy_last_quarter).sort()).toEqual(['multi_rewards/accuracies', 'single_rewards/accuracies']);
    expect(ic.curve[0]).toHaveProperty('vcdist_gate_pass_rate');
    // the summary: one row per method and kind of negatives, each over both seeds
    expect(r.summary.length).toBe(7);
    for (const row of r.summary) {
      expect(row.benchmark.trap.n).toBe(2);
      const runs = r.runs.filter((x) => x.method === row.method && x.negatives === row.negatives);
      expect(row.held_out_accuracy.multi).toEqual(meanSd(runs.map((x) => x.held_out_accuracy.multi)));
    }
    // the same runs done as two parts (the ablation apart) and merged: the same summary
    const part = (keep: (m: string) => boolean) => ({ ...r, runs: r.runs.filter((x) => keep(x.method)) });
    const merged = mergeToyResults([part((m) => !m.includes('/')), part((m) => m.includes('/'))]);
    expect(merged.summary).toEqual(r.summary);
    expect(() => mergeToyResults([part((m) => !m.includes('/')), part(() => true)])).toThrow(/is in an earlier part too/);
    expect(() => mergeToyResults([r, { ...part(() => false), options: { ...r.options, steps: 9 } }])).toThrow(
      /options\.steps is 9, part 1's 8; only runs with the same budget/,
    );
    const figs = toyFigures(r);
    expect(Object.keys(figs).sort()).toEqual(['fig4-chosen-logp.svg', 'fig6-vcdist-gates.svg', 'fig6-vcdist-kl.svg']);
    expect(figs['fig4-chosen-logp.svg']).toContain('w/o L_Anc');
    expect(figs['fig4-chosen-logp.svg'].match(/<polyline/g)!.length).toBe(4);
  }, 600_000);

  it('refuses unknown methods and out-of-range options before any work (exit 2)', async () => {
    for (const [args, msg] of [
      [['--methods', 'foo'], /--methods: unknown "foo"; known: dpo, mdpo/],
      [['--lr=-1'], /--lr takes a number > 0 and ≤ 1, got "-1"/],
      [['--seeds', '1,x'], /--seeds takes an integer/],
      [['--objectives', 'dpo'], /Unknown option '--objectives'/],
      [['--merge', 'only-one.json'], /--merge takes two or more result files/],
      [['--merge', 'nope-a.json,nope-b.json'], /--merge nope-a\.json: not a readable toy-paper result/],
    ] as const) {
      const r = await cli(['toy-paper', ...args]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.out).toBe('');
    }
  });
});
