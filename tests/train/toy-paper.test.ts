/**
 * `vco-lab toy-paper` at a tiny budget on the shipped default model: both kinds of negatives built from the
 * same seed tuples, LoRA runs through the engine, the benchmark after each run through the engine's batch path
 * with that LoRA, and preference training that moves the policy (DPO's loss falls below log 2 from its start).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { toyPaper, toySamples } from '../../src/node/toy-paper.js';
import { createNodeRuntime } from '../../src/runtime/node.js';

describe('toy-paper', () => {
  it("edited and synthetic negatives share m, y and y'; only m' differs", async () => {
    const rt = await createNodeRuntime('cpu');
    const m = await loadModelDir(rt, DEFAULT_MODEL_DIR);
    const o = { pairs: 6, seed: 3, starYellow: 0.5 };
    const [e, s] = [toySamples(m, o, 'edited'), toySamples(m, o, 'synthetic')];
    for (let i = 0; i < o.pairs; i++) {
      expect(s[i].responses).toEqual(e[i].responses);
      expect(s[i].spanMasks).toEqual(e[i].spanMasks);
      expect(s[i].images.m).toEqual(e[i].images.m);
      expect(s[i].images["m'"]).not.toEqual(e[i].images["m'"]);
      expect(e[i].spanMasks.y.some((x) => x === 1) || e[i].spanMasks["y'"].some((x) => x === 1)).toBe(true);
    }
    await m.engine.release();
  });

  it('runs every objective on both kinds of negatives and reports the benchmark after each', async () => {
    const rt = await createNodeRuntime('cpu');
    const r = await toyPaper(rt, {
      modelDir: DEFAULT_MODEL_DIR,
      pairs: 8,
      steps: 6,
      batch: 2,
      lr: 1e-2,
      rank: 4,
      perCategory: 10,
      seed: 5,
      starYellow: 0.5,
      objectives: ['dpo', 'icvco:paper'],
    });
    expect(r.runs.map((x) => `${x.objective}/${x.negatives}`)).toEqual([
      'dpo/edited',
      'icvco:paper/edited',
      'dpo/synthetic',
      'icvco:paper/synthetic',
    ]);
    for (const x of r.runs) {
      expect(Object.keys(x.benchmark)).toEqual(['existence', 'attribute', 'relation', 'trap']);
      expect(x.reward_accuracy_last).toBeGreaterThanOrEqual(0);
      expect(x.reward_accuracy_last).toBeLessThanOrEqual(1);
      // LoRA B starts at zero: the first DPO step sees policy = reference, loss exactly log 2
      if (x.objective === 'dpo') expect(x.loss_last).toBeLessThan(x.loss_first);
    }
    expect(r.image_ssim.edited).toBeGreaterThan(r.image_ssim.synthetic);
  }, 300_000);
});
