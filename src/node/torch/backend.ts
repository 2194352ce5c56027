/**
 * The PyTorch worker as a training backend (src/engine/trainer.ts's `TrainBackend`): the Trainer keeps the
 * data order, the loss module, accumulation and the schedule; the ranks score their share of each micro-batch
 * (sample i goes to rank i mod N), keep the autograd graph, back-propagate Σ (dL/ds)·mask·log p when Node sends
 * the weights, and take the AdamW step after summing their gradients (one global loss, so SUM, not mean).
 *
 * Every sequence is one row: the context's prompt ids (VCO Lab's prompt builder, the same ids the engine
 * scores), the response, and the context's image tiles as VCO Lab's processors make them (they reproduce the
 * HF processors bit for bit: tests/model/processor.test.ts), so both backends see the same inputs.
 */
import type { AdamWConfig, AdamWState } from '../../engine/optim.js';
import type { EngineSample } from '../../engine/sample.js';
import type { TrainBackend } from '../../engine/trainer.js';
import type { Resp, SeqKey, SequenceRequirement, SequenceScores } from '../../loss/types.js';
import { type B64Array, type TorchWorkers, fromB64, toB64 } from './workers.js';

interface Row {
  sample: number;
  key: SeqKey;
  mask: number[];
}

interface Saved {
  handle: string;
  /** per rank, what each of its rows is */
  rows: Row[][];
}

const RESPS: readonly Resp[] = ['y', "y'"];

export interface TorchBackend extends TrainBackend {
  workers: TorchWorkers;
  /** the PEFT adapter (and the optimizer state) into `dir` (rank 0 writes) */
  save(dir: string, optimizer: boolean): Promise<void>;
  restore(dir: string): Promise<void>;
}

export function torchBackend(workers: TorchWorkers): TorchBackend {
  let handles = 0;
  const n = workers.size;

  function rowsOf(s: EngineSample, k: number, reqs: ReadonlyArray<SequenceRequirement>) {
    const byKey = new Map(reqs.map((r) => [r.key, r]));
    const contexts = [...new Set(reqs.map((r) => r.key.split('|')[0]))];
    const rows: Array<{ wire: Record<string, unknown>; row: Row }> = [];
    for (const ctx of contexts) {
      const prompt = ctx === 'x' ? s.prompts.x : s.prompts[ctx as keyof EngineSample['contextImages']];
      if (!prompt) throw new Error(`sample ${s.id} has no prompt for context ${ctx}`);
      const tiles = ctx === 'x' ? [] : s.contextImages[ctx as keyof EngineSample['contextImages']].flatMap((im) => s.images[im]);
      for (const resp of RESPS) {
        const key = `${ctx}|${resp}` as SeqKey;
        const req = byKey.get(key);
        if (!req) continue;
        const ids = [...prompt, ...s.responses[resp]];
        const mask = req.mask === 'span' ? s.spanMasks[resp] : s.responses[resp].map(() => 1);
        rows.push({
          wire: {
            ids,
            response_start: prompt.length,
            images: tiles.map((t) => {
              const side = Math.round(Math.sqrt(t.length / 3));
              return { pixels: toB64(t, [3, side, side]) };
            }),
          },
          row: { sample: k, key, mask },
        });
      }
    }
    return rows;
  }

  return {
    workers,
    async score(batch, reqs, which, save) {
      const handle = `h${handles++}`;
      const perRank: Array<Array<{ wire: Record<string, unknown>; row: Row }>> = Array.from({ length: n }, () => []);
      batch.forEach((s, k) => perRank[k % n].push(...rowsOf(s, k, reqs)));
      const replies = await Promise.all(
        perRank.map((rows, r) =>
          workers.request<{ logprobs: B64Array[] }>(r, 'forward', {
            rows: rows.map((x) => x.wire),
            which,
            keep: save ? handle : undefined,
          }),
        ),
      );
      const scores: SequenceScores[] = batch.map(() => ({}));
      replies.forEach((rep, r) =>
        rep.logprobs.forEach((a, j) => {
          const { sample, key, mask } = perRank[r][j].row;
          const lp = fromB64(a);
          let sum = 0;
          for (let t = 0; t < lp.length; t++) if (mask[t]) sum += lp[t];
          scores[sample][key] = sum;
        }),
      );
      const saved: Saved = { handle, rows: perRank.map((rows) => rows.map((x) => x.row)) };
      return { scores, saved: save ? saved : undefined };
    },
    async backwardBatch(_batch, _reqs, saved, weights) {
      const sv = saved as Saved;
      await Promise.all(
        sv.rows.map((rows, r) =>
          workers.request(r, 'backward', {
            handle: sv.handle,
            weights: rows.map(({ sample, key, mask }) => {
              const w = weights[sample][key] ?? 0;
              return toB64(
                Float64Array.from(mask, (m) => m * w),
                [mask.length],
              );
            }),
          }),
        ),
      );
    },
    async update(o: { lr: number; maxNorm: number | null; optimizer: AdamWConfig; adam: AdamWState }) {
      const replies = await workers.all<{ grad_norm: number; bad?: string }>('step', {
        lr: o.lr,
        max_grad_norm: o.maxNorm,
        betas: o.optimizer.betas,
        eps: o.optimizer.eps,
        weight_decay: o.optimizer.weightDecay,
      });
      o.adam.step++;
      return { gradNorm: replies[0].grad_norm, bad: replies[0].bad };
    },
    async save(dir, optimizer) {
      await workers.all('save', { dir, optimizer });
    },
    async restore(dir) {
      await workers.all('restore', { dir });
    },
  };
}
