/**
 * The one feeds builder: rows of (prompt, images, responses) -> the host inputs of the segment graphs for a
 * batch. Each row is packed ([prompt | y | y' ...], packing.ts); rows are laid out in B slots of L tokens,
 * shorter rows and empty slots padded at the end with a pad id that no real token ever attends to (every
 * pad position is masked out, and pads are never scored). Scored tokens are flattened to R entries
 * (`b·L + t` predicts `targets[j]`); unused entries predict token 0 from position 0 and are dropped.
 *
 * Rounding L, R and B up (`lengthMultiple`, `rows`) keeps the number of distinct graph shapes small, which
 * matters where each new shape costs a shader compilation (WebGPU); it changes no score.
 */
import { ropeTables } from '../onnx/nn.js';
import { type VlmSpec, imagePositions, ropeInvFreq } from '../model/vlm.js';
import { type PackedLayout, packSequence } from './packing.js';
import type { BatchShape } from './segments.js';

/** one sequence to score: a prompt (image tokens expanded), its images' tiles in order, responses packed behind it */
export interface ScoreRow {
  prompt: ReadonlyArray<number>;
  images: ReadonlyArray<Float32Array>;
  responses: ReadonlyArray<ReadonlyArray<number>>;
}

export interface BatchLayoutOptions {
  /** B: slots in the batch (default: the number of rows) */
  rows?: number;
  /** round L and R up to a multiple of this (default 1: exact) */
  lengthMultiple?: number;
  /** L at least this (one shape for every step of a run) */
  length?: number;
  /** R at least this */
  scored?: number;
  /** the id pad positions hold (default 0, or 1 where 0 is the image token) */
  padId?: number;
}

export interface BatchLayout {
  shape: BatchShape;
  layouts: PackedLayout[];
  /** per row, per response: [start, end) in the flattened scored tokens */
  spans: Array<Array<[number, number]>>;
  /** every row's image tiles, in row order (the order their <image> tokens take features) */
  images: Float32Array[];
  ids: BigInt64Array;
  imageIndex: BigInt64Array;
  imageMask: Uint8Array;
  cos: Float32Array;
  sin: Float32Array;
  mask: Float32Array;
  predict: BigInt64Array;
  targets: BigInt64Array;
}

/** an input the model cannot take (a token id out of range): a clear error before any graph runs */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

export function layoutBatch(spec: VlmSpec, rows: ReadonlyArray<ScoreRow>, o: BatchLayoutOptions = {}): BatchLayout {
  if (!rows.length) throw new Error('internal: an empty batch');
  const B = o.rows ?? rows.length;
  if (rows.length > B) throw new Error(`internal: ${rows.length} rows for a batch of ${B}`);
  const m = o.lengthMultiple ?? 1,
    hd = spec.text.headDim;
  const pad = BigInt(o.padId ?? (spec.imageTokenId === 0 ? 1 : 0));
  // an id outside the embedding table would fail deep inside a Gather (or read garbage on some EPs)
  const V = spec.text.vocab;
  rows.forEach((r, b) =>
    [r.prompt, ...r.responses].forEach((seq, j) => {
      const i = seq.findIndex((t) => !(Number.isInteger(t) && t >= 0 && t < V));
      if (i >= 0)
        throw new InputError(
          `row ${b}: token id ${seq[i]} at position ${i} of its ${j ? `response ${j}` : 'prompt'} is outside the ` +
            `model's vocabulary (0..${V - 1}, config.json vocab_size): the tokenizer and the model do not belong together`,
        );
    }),
  );
  const layouts = rows.map((r) => packSequence(r.prompt, r.responses));
  const L = Math.max(roundUp(Math.max(...layouts.map((l) => l.ids.length)), m), o.length ?? 0);
  const R = Math.max(
    roundUp(
      layouts.reduce((n, l) => n + l.targets.length, 0),
      m,
    ),
    o.scored ?? 0,
  );
  const ids = new BigInt64Array(B * L).fill(pad);
  const positions = new Float64Array(B * L);
  const mask = new Float32Array(B * L * L).fill(-1e9);
  const predict = new BigInt64Array(R),
    targets = new BigInt64Array(R);
  const spans: Array<Array<[number, number]>> = [];
  let k = 0;
  layouts.forEach((lay, b) => {
    const n = lay.ids.length;
    lay.ids.forEach((t, i) => {
      ids[b * L + i] = BigInt(t);
      positions[b * L + i] = lay.positions[i];
    });
    for (let i = 0; i < n; i++) mask.set(lay.mask.subarray(i * n, (i + 1) * n), (b * L + i) * L);
    spans.push(lay.spans.map(([a, e]) => [k + a, k + e]));
    lay.predictIndex.forEach((p, j) => {
      predict[k + j] = BigInt(b * L + p);
      targets[k + j] = BigInt(lay.targets[j]);
    });
    k += lay.targets.length;
  });
  const images = rows.flatMap((r) => [...r.images]);
  const { index, mask: imageMask } = imagePositions(Array.from(ids, Number), spec, images.length);
  const { cos, sin } = ropeTables(positions, hd, ropeInvFreq(spec.text));
  return { shape: { B, L, R }, layouts, spans, images, ids, imageIndex: index, imageMask, cos, sin, mask, predict, targets };
}

/** per row, per response: the log-probs of its tokens out of the flattened [R] */
export function splitLogprobs(lay: BatchLayout, lp: Float32Array): Float32Array[][] {
  return lay.spans.map((row) => row.map(([a, e]) => lp.slice(a, e)));
}

/** per row, per response seeds -> the flattened [R] seed of a backward pass (unused entries 0) */
export function flattenSeeds(lay: BatchLayout, seeds: ReadonlyArray<ReadonlyArray<ArrayLike<number>>>): Float32Array {
  const out = new Float32Array(lay.shape.R);
  lay.spans.forEach((row, b) =>
    row.forEach(([a, e], k) => {
      const s = seeds[b]?.[k];
      if (!s) return;
      if (s.length !== e - a) throw new Error(`internal: a seed of ${s.length} for a response of ${e - a} tokens`);
      for (let j = 0; j < s.length; j++) out[a + j] = s[j];
    }),
  );
  return out;
}
