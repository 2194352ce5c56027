/**
 * The engine's batch path (many rows in one pass: the benchmark, the page's questions, SFT) against
 * independent references: the token log-probs HF transformers computed for the public reference cases (every
 * sequence of a case in one padded batch, reference = adapter off, policy = PEFT adapter on), through both
 * plans (segmented and fused), and finite differences of the mean NLL for the fused plan's full-weight gradient.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ScoreRow } from '../../src/engine/engine.js';
import { parameterList } from '../../src/model/vlm.js';
import { loadCase } from '../../src/node/reference-case.js';
import { loadEngineDir } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { PUBLIC_CASES, requireReference } from '../helpers.js';

function caseRows(dir: string): { rows: ScoreRow[]; rc: ReturnType<typeof loadCase> } {
  const rc = loadCase(dir);
  const img = (k: number, name: string) => Float32Array.from((name === 'm' ? rc.samples[k].m : rc.samples[k].m_contrast) ?? []);
  const rows = rc.sequences.map((s) => ({
    prompt: s.input_ids.slice(0, s.response_start),
    images: s.images.map((n) => img(s.sample, n)),
    responses: [s.input_ids.slice(s.response_start)],
  }));
  return { rows, rc };
}

describe('batched scoring vs HF reference log-probs', () => {
  for (const c of PUBLIC_CASES) {
    it(`${c.name}: every sequence in one padded batch, adapter off and on, segmented and fused`, async () => {
      requireReference();
      const { rows, rc } = caseRows(c.dir);
      const rt = await createNodeRuntime('cpu');
      const m = { engine: await loadEngineDir(rt, join(c.dir, 'model'), join(c.dir, 'adapter')) };
      for (const which of ['reference', 'policy'] as const) {
        const got = await m.engine.scoreRows(rows, which, { batch: rows.length });
        let worst = 0;
        rc.sequences.forEach((s, i) => {
          const want = which === 'policy' ? s.policy_token_logprobs : s.reference_token_logprobs;
          want.forEach((w, j) => {
            worst = Math.max(worst, Math.abs(w - got[i][0][j]));
          });
        });
        expect(worst).toBeLessThan(1e-4);
      }
      // the fused plan (one graph, forward and backward) scores the same tokens with the adapter
      const seeds = rows.map((r) => [new Float32Array(r.responses[0].length)]);
      const fused = await m.engine.fusedGradient(rows, seeds, { lengthMultiple: 16 });
      let worst = 0;
      rc.sequences.forEach((s, i) =>
        s.policy_token_logprobs.forEach((w, j) => {
          worst = Math.max(worst, Math.abs(w - fused.logprobs[i][0][j]));
        }),
      );
      expect(worst).toBeLessThan(1e-4);
      await m.engine.release();
    }, 120_000);
  }
});

describe('full-weight gradient (fused plan)', () => {
  it('matches central finite differences of the mean NLL along random directions', async () => {
    requireReference();
    const dir = join(PUBLIC_CASES[0].dir, 'model');
    const rt = await createNodeRuntime('cpu');
    const m = { engine: await loadEngineDir(rt, dir) };
    const { rows: all, rc } = caseRows(PUBLIC_CASES[0].dir);
    const rows = all.filter((_, i) => rc.sequences[i].branch === 'single').slice(0, 3);
    // token weights 1 and 2 alternating, normalised: a weighted mean NLL
    const w = rows.map((r) => r.responses[0].map((_, j) => 1 + (j % 2)));
    const total = w.flat().reduce((a, b) => a + b, 0);
    const seeds = w.map((ws) => [Float32Array.from(ws, (x) => -x / total)]);
    const shape = { allWeights: true };
    const { logprobs, grads } = await m.engine.fusedGradient(rows, seeds, shape);
    const loss = -logprobs.reduce((a, row, i) => a + row[0].reduce((x, lp, j) => x + (w[i][j] * lp) / total, 0), 0);
    // every parameter the model has gets a gradient
    const params = parameterList(m.engine.spec);
    expect([...grads.keys()].sort()).toEqual(params.map((p) => p.name).sort());
    const nll = async () => {
      const lp = await m.engine.scoreRows(rows, 'reference', { batch: rows.length });
      let s = 0;
      lp.forEach((row, i) =>
        row[0].forEach((x, j) => {
          s -= (w[i][j] * x) / total;
        }),
      );
      return s;
    };
    expect(Math.abs((await nll()) - loss)).toBeLessThan(1e-6);
    // directions over a few tensors of each kind: the patch conv, an embedding table, a vision and an LM linear, a norm
    const pick = [
      'model.vision_model.embeddings.patch_embedding.weight',
      'model.text_model.embed_tokens.weight',
      'model.vision_model.encoder.layers.0.mlp.fc1.weight',
      'model.text_model.layers.1.self_attn.q_proj.weight',
      'model.text_model.norm.weight',
      'model.connector.modality_projection.proj.weight',
      'lm_head.weight',
    ];
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648 - 0.5;
    };
    for (const name of pick) {
      const w0 = Float32Array.from((await m.engine.weights.get(name)!.getData()) as Float32Array);
      const d = w0.map(() => rand());
      const analytic = grads.get(name)!.reduce((a, g, i) => a + g * d[i], 0);
      const eps = 2e-3;
      const at = async (sgn: number) => {
        await m.engine.setWeights(new Map([[name, w0.map((x, i) => x + sgn * eps * d[i])]]));
        return nll();
      };
      const fd = ((await at(1)) - (await at(-1))) / (2 * eps);
      await m.engine.setWeights(new Map([[name, w0]]));
      expect(Math.abs(fd - analytic), `${name}: fd ${fd} vs analytic ${analytic}`).toBeLessThan(2e-3 + 2e-2 * Math.abs(analytic));
    }
    await m.engine.release();
  }, 120_000);
});
