/**
 * The batched whole-model graph (SFT from scratch, yes/no benchmark) against independent references: the
 * token log-probs HF transformers computed for the public reference cases (every sequence of a case in one
 * right-padded batch, reference = adapter off, policy = PEFT adapter on), and finite differences of the mean
 * NLL for the full-weight gradient.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase } from '../../src/node/reference-case.js';
import { loadWeightsDir } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { BatchRunner, type Row } from '../../src/train/batch.js';
import { parameterList } from '../../src/model/vlm.js';
import { PUBLIC_CASES, requireReference } from '../helpers.js';

describe('batched graph vs HF reference log-probs', () => {
  for (const c of PUBLIC_CASES.filter((x) => !x.name.includes('visionlora'))) {
    it(`${c.name}: every sequence in one padded batch, adapter off and on`, async () => {
      requireReference();
      const rc = loadCase(c.dir);
      const rt = await createNodeRuntime('cpu');
      for (const which of ['reference', 'policy'] as const) {
        const m = await loadWeightsDir(rt, join(c.dir, 'model'), which === 'policy' ? join(c.dir, 'adapter') : undefined);
        const img = (k: number, name: string) => Float32Array.from((name === 'm' ? rc.samples[k].m : rc.samples[k].m_contrast) ?? []);
        const rows: Row[] = rc.sequences.map((s) => ({
          ids: s.input_ids, tiles: s.images.map((n) => img(s.sample, n)),
          targets: s.input_ids.slice(s.response_start).map((token, j) => ({ at: s.response_start - 1 + j, token, weight: 1 })),
        }));
        const L = Math.max(...rows.map((r) => r.ids.length)), nImages = rows.reduce((n, r) => n + r.tiles.length, 0);
        const R = rows.reduce((n, r) => n + r.targets.length, 0);
        const runner = new BatchRunner(rt, m.spec, m.store, { B: rows.length, L, nImages, R }, 0, { lora: m.lora });
        const got = await runner.logprobs(rows);
        let worst = 0;
        rc.sequences.forEach((s, i) => {
          const want = which === 'policy' ? s.policy_token_logprobs : s.reference_token_logprobs;
          want.forEach((w, j) => { worst = Math.max(worst, Math.abs(w - got[i][j])); });
        });
        expect(worst).toBeLessThan(1e-4);
        await runner.release();
      }
    }, 120_000);
  }
});

describe('full-weight gradient', () => {
  it('matches central finite differences of the mean NLL along random directions', async () => {
    requireReference();
    const dir = join(PUBLIC_CASES[0].dir, 'model');
    const rc = loadCase(PUBLIC_CASES[0].dir);
    const rt = await createNodeRuntime('cpu');
    const m = await loadWeightsDir(rt, dir);
    const seqs = rc.sequences.filter((s) => s.branch === 'single').slice(0, 3);
    const rows: Row[] = seqs.map((s) => ({
      ids: s.input_ids, tiles: [Float32Array.from(rc.samples[s.sample].m ?? [])],
      targets: s.input_ids.slice(s.response_start).map((token, j) => ({ at: s.response_start - 1 + j, token, weight: 1 + (j % 2) })),
    }));
    const shape = { B: rows.length, L: Math.max(...rows.map((r) => r.ids.length)), nImages: rows.length, R: rows.reduce((n, r) => n + r.targets.length, 0) };
    const runner = new BatchRunner(rt, m.spec, m.store, shape, 0);
    const { loss, grads } = await runner.nllGrad(rows);
    // every parameter the model has gets a gradient, and it is not all zero for the LM's weights
    const params = parameterList(m.spec);
    expect([...grads.keys()].sort()).toEqual(params.map((p) => p.name).sort());
    const nll = async () => {
      const lp = await runner.logprobs(rows);
      let s = 0, w = 0;
      rows.forEach((r, i) => r.targets.forEach((t, j) => { s -= t.weight * lp[i][j]; w += t.weight; }));
      return s / w;
    };
    expect(Math.abs((await nll()) - loss)).toBeLessThan(1e-6);
    // directions over a few tensors of each kind: the patch conv, an embedding table, a vision and an LM linear, a norm
    const pick = ['model.vision_model.embeddings.patch_embedding.weight', 'model.text_model.embed_tokens.weight',
      'model.vision_model.encoder.layers.0.mlp.fc1.weight', 'model.text_model.layers.1.self_attn.q_proj.weight',
      'model.text_model.norm.weight', 'model.connector.modality_projection.proj.weight', 'lm_head.weight'];
    let seed = 12345;
    const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 - 0.5; };
    for (const name of pick) {
      const p = params.find((x) => x.name === name)!;
      const w0 = Float32Array.from((await m.store.get(name)!.getData()) as Float32Array);
      const d = w0.map(() => rand());
      const analytic = grads.get(name)!.reduce((a, g, i) => a + g * d[i], 0);
      const eps = 2e-3;
      const at = async (sgn: number) => {
        await m.store.set(name, rt.tensor('float32', w0.map((x, i) => x + sgn * eps * d[i]), p.shape));
        return nll();
      };
      const fd = ((await at(1)) - (await at(-1))) / (2 * eps);
      await m.store.set(name, rt.tensor('float32', w0, p.shape));
      expect(Math.abs(fd - analytic), `${name}: fd ${fd} vs analytic ${analytic}`).toBeLessThan(2e-3 + 2e-2 * Math.abs(analytic));
    }
    await runner.release();
  }, 120_000);
});
