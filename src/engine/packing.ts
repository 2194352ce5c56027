/**
 * Packing several responses behind one shared prompt: [prompt | y | y'] with a block mask (each response
 * sees the prompt and itself, never the other) and positions that restart after the prompt, so the long
 * image prefix is computed once per context. Each response's first token is predicted from the prompt's
 * last position. With one response this is the ordinary causal sequence.
 */

export interface PackedLayout {
  ids: number[];
  /** RoPE positions */
  positions: number[];
  /** additive mask [L, L]: 0 where attention is allowed, -1e9 elsewhere */
  mask: Float32Array;
  /** position whose hidden state predicts each scored token */
  predictIndex: number[];
  targets: number[];
  /** where each response's tokens sit in predictIndex/targets */
  spans: Array<[number, number]>;
}

export function packSequence(prompt: ReadonlyArray<number>, responses: ReadonlyArray<ReadonlyArray<number>>): PackedLayout {
  const P = prompt.length;
  if (P === 0) throw new Error('packing needs a non-empty prompt');
  const ids = [...prompt],
    positions = prompt.map((_, i) => i),
    block = prompt.map(() => 0);
  const predictIndex: number[] = [],
    targets: number[] = [],
    spans: Array<[number, number]> = [];
  responses.forEach((r, k) => {
    if (r.length === 0) throw new Error(`response ${k} is empty`);
    const start = ids.length;
    spans.push([targets.length, targets.length + r.length]);
    r.forEach((tok, j) => {
      predictIndex.push(j === 0 ? P - 1 : start + j - 1);
      targets.push(tok);
      ids.push(tok);
      positions.push(P + j);
      block.push(k + 1);
    });
  });
  const L = ids.length;
  const mask = new Float32Array(L * L).fill(-1e9);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j <= i; j++) if (block[j] === 0 || block[j] === block[i]) mask[i * L + j] = 0;
  }
  return { ids, positions, mask, predictIndex, targets, spans };
}
