/**
 * Runs a VLM on sequences: loads and uploads the weights once (optionally int4), builds and caches one
 * forward graph and one backward graph per sequence shape, and returns per-token log-probs of the response
 * (policy: adapter on; reference: adapter off) and the gradients of Σ seed_t·log p_t for every LoRA A and B.
 */
import type { Tensor } from 'onnxruntime-common';
import { buildBackward } from '../onnx/autodiff.js';
import { causalMask, ropeTables } from '../onnx/nn.js';
import type { Runtime, Session, WeightStore } from '../runtime/runtime.js';
import type { Checkpoint } from './checkpoint.js';
import type { Adapter } from './peft.js';
import { CheckpointError } from './safetensors.js';
import { type GraphShape, type LoraInput, type VlmSpec, buildVlmGraph, imagePositions, linearModules, parameterList, stackImages } from './vlm.js';
import { int4Block, toFloat32, uploadWeights } from './weights.js';

export interface ScoreSequence {
  inputIds: ArrayLike<number>;
  /** each [3, H, W] float32, normalised pixel values, in the order the sequence's <image> blocks appear */
  images: Float32Array[];
  responseStart: number;
}

export interface ScorerOptions {
  /** quantize frozen linears to int4 (block 32, or 16 where K is not a multiple of 32) */
  int4?: boolean;
}


export class VlmScorer {
  private readonly sessions = new Map<string, Promise<{ session: Session; grads?: Record<string, string>; seed?: string }>>();
  private readonly loraPlan: Map<string, LoraInput> | null;
  private readonly int4Modules = new Set<string>();
  readonly weights: WeightStore;

  private constructor(readonly rt: Runtime, readonly spec: VlmSpec, readonly adapter: Adapter | null, private readonly opts: ScorerOptions) {
    this.weights = rt.weightStore();
    this.loraPlan = adapter ? new Map([...adapter.modules].map(([m, l]) => [m, { r: l.r, scale: l.scale }])) : null;
  }

  static async create(rt: Runtime, spec: VlmSpec, ckpt: Checkpoint, adapter: Adapter | null, opts: ScorerOptions = {}): Promise<VlmScorer> {
    const s = new VlmScorer(rt, spec, adapter, opts);
    await s.upload(ckpt);
    return s;
  }

  static int4Block = int4Block;

  private async upload(ckpt: Checkpoint): Promise<void> {
    const up = await uploadWeights(this.rt, this.weights, this.spec, ckpt, { int4: this.opts.int4 });
    for (const m of up.int4) this.int4Modules.add(m);
    const linears = new Set(linearModules(this.spec));
    if (this.adapter) {
      for (const [m, l] of this.adapter.modules) {
        if (!linears.has(m) && !m.includes('.head.')) {
          throw new CheckpointError(`${this.adapter.file}: LoRA module ${m} is not a linear layer of this ${this.spec.family} model`);
        }
        const p = parameterList(this.spec, true).find((x) => x.name === `${m}.weight`);
        if (p && (l.A.shape[1] !== p.linear!.in || l.B.shape[0] !== p.linear!.out)) {
          throw new CheckpointError(`${this.adapter.file}: ${m}.lora_A/B have shapes [${l.A.shape}] / [${l.B.shape}], expected ` +
            `[${l.r}, ${p.linear!.in}] / [${p.linear!.out}, ${l.r}]`);
        }
      }
    }
    if (this.adapter) await this.setAdapterWeights(this.adapter);
  }

  /** (re)upload LoRA A and B, e.g. after an optimizer step */
  async setAdapterWeights(a: Adapter): Promise<void> {
    for (const [m, l] of a.modules) {
      await this.weights.set(`${m}.lora_A.weight`, this.rt.tensor('float32', toFloat32(l.A), l.A.shape));
      await this.weights.set(`${m}.lora_B.weight`, this.rt.tensor('float32', toFloat32(l.B), l.B.shape));
    }
  }

  /** the host-side inputs of a sequence: ids, where image features go, RoPE tables, the causal mask */
  sequenceFeeds(seq: ScoreSequence): Record<string, Tensor> {
    const L = seq.inputIds.length, s = this.spec;
    const ids = BigInt64Array.from(Array.from(seq.inputIds, (x) => BigInt(x)));
    const { index, mask } = imagePositions(seq.inputIds, s, seq.images.length);
    const { cos, sin } = ropeTables(Array.from({ length: L }, (_, i) => i), s.text.headDim, s.text.ropeTheta);
    const px = stackImages(seq.images, s);
    const R = L - seq.responseStart;
    const predict = BigInt64Array.from({ length: R }, (_, j) => BigInt(seq.responseStart - 1 + j));
    return {
      predict_index: this.rt.tensor('int64', predict, [R]),
      targets: this.rt.tensor('int64', ids.slice(seq.responseStart), [R]),
      input_ids: this.rt.tensor('int64', ids, [1, L]),
      image_index: this.rt.tensor('int64', index, [L]),
      image_mask: this.rt.tensor('bool', mask, [L, 1]),
      rope_cos: this.rt.tensor('float32', cos, [L, s.text.headDim]),
      rope_sin: this.rt.tensor('float32', sin, [L, s.text.headDim]),
      attn_mask: this.rt.tensor('float32', causalMask(L), [L, L]),
      pixel_values: this.rt.tensor('float32', px, [seq.images.length, 3, s.vision.imageSize, s.vision.imageSize]),
    };
  }

  private graphKey(shape: GraphShape, kind: string) {
    return `${kind}:${shape.L}:${shape.nImages}:${shape.R}`;
  }

  private session(shape: GraphShape, kind: 'policy' | 'reference' | 'backward') {
    const key = this.graphKey(shape, kind);
    let s = this.sessions.get(key);
    if (!s) {
      s = (async () => {
        const vg = buildVlmGraph(this.spec, shape, {
          lora: kind === 'reference' ? null : this.loraPlan, int4: this.int4Modules,
          int4Block: (_m, K) => VlmScorer.int4Block(K),
        });
        if (kind !== 'backward') return { session: await this.rt.session(vg.g, { weights: this.weights }) };
        const wrt = [...vg.lora.values()].flatMap((l) => [l.A, l.B]);
        const bw = buildBackward(vg.g, { objective: { weighted: [vg.logprobs] }, wrt, keep: [vg.logprobs] });
        return { session: await this.rt.session(bw.graph, { weights: this.weights }), grads: bw.grads, seed: bw.seeds[vg.logprobs.name] };
      })();
      this.sessions.set(key, s);
    }
    return s;
  }

  private shapeOf(seq: ScoreSequence): GraphShape {
    return { L: seq.inputIds.length, nImages: seq.images.length, R: seq.inputIds.length - seq.responseStart };
  }

  /** per-token log-probs of the response tokens; policy = adapter on, reference = adapter off */
  async logprobs(seq: ScoreSequence, which: 'policy' | 'reference'): Promise<Float32Array> {
    const kind = which === 'policy' && this.loraPlan ? 'policy' : 'reference';
    const { session } = await this.session(this.shapeOf(seq), kind);
    const out = await session.run(this.sequenceFeeds(seq));
    return Float32Array.from((await out.logprobs.getData()) as Float32Array);
  }

  /**
   * Policy log-probs and d(Σ_t seed_t·log p_t)/d(every LoRA A and B in the graph), keyed by PEFT tensor name
   * without the base_model.model. prefix; modules whose output does not reach the response get no entry.
   */
  async grads(seq: ScoreSequence, seed: Float32Array): Promise<{ logprobs: Float32Array; grads: Map<string, Float32Array> }> {
    if (!this.loraPlan) throw new Error('no adapter: there is nothing to differentiate');
    const { session, grads, seed: seedName } = await this.session(this.shapeOf(seq), 'backward');
    const R = seq.inputIds.length - seq.responseStart;
    if (seed.length !== R) throw new Error(`seed has ${seed.length} entries for ${R} response tokens`);
    const out = await session.run({ ...this.sequenceFeeds(seq), [seedName!]: this.rt.tensor('float32', seed, [R]) });
    const res = new Map<string, Float32Array>();
    for (const [input, outName] of Object.entries(grads!)) res.set(input, Float32Array.from((await out[outName].getData()) as Float32Array));
    return { logprobs: Float32Array.from((await out.logprobs.getData()) as Float32Array), grads: res };
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).session.release();
    this.sessions.clear();
    this.weights.dispose();
  }
}
