/**
 * The scoring and gradient engine over segment graphs (segments.ts), with nothing computed twice:
 *  - image features once per image content (the frozen tower), shared by every context and by policy and
 *    reference; recomputed with the adapter only when the tower carries LoRA;
 *  - both responses of a context in one packed pass (packing.ts);
 *  - with LoRA on the top k LM layers only, the frozen lower stack's output is cached per context;
 *  - the backward pass goes layer by layer from the top, recomputing each layer from its stored input.
 * LoRA A and B live on the host (the optimizer's side) and are uploaded into the weight store after each step.
 */
import type { Tensor } from 'onnxruntime-common';
import { ropeTables } from '../onnx/nn.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { type Adapter, peftMatches } from '../model/peft.js';
import { type LoraInput, type VlmSpec, imagePositions, linearModules, parameterList, prefixes, stackImages } from '../model/vlm.js';
import { int4Block, uploadWeights } from '../model/weights.js';
import type { Runtime, Session, WeightStore } from '../runtime/runtime.js';
import { type PackedLayout, packSequence } from './packing.js';
import { addGradient } from './sample.js';
import { type Segment, type SegmentWithBackward, embedSegment, headSegment, layerAlias, layerSegment, visionSegment,
  withBackward } from './segments.js';

export interface LoraSettings {
  r: number;
  alpha: number;
  /** PEFT target_modules: a regex (full match) or module names matched as dotted suffixes */
  targets: string | string[];
  /** LoRA only on the top k LM layers (and not in the tower) */
  topK?: number;
  rslora?: boolean;
}

export interface LoraParam {
  module: string;
  r: number;
  scale: number;
  inFeatures: number;
  outFeatures: number;
  A: Float32Array;
  B: Float32Array;
}

export interface ContextInput {
  /** prompt ids with each image's tokens expanded */
  prompt: number[];
  images: Float32Array[];
}

interface Saved {
  layout: PackedLayout;
  feeds: Record<string, Tensor>;
  /** input of every LM layer from the first one the backward pass must reach */
  layerInputs: Map<number, Tensor>;
  final: Tensor;
  features?: Tensor;
  images: Float32Array[];
}

/** bytes a saved forward keeps for the backward pass (layer inputs, final hidden state) */
export function savedBytes(saved: { layerInputs: Map<number, Tensor>; final: Tensor }): number {
  let b = saved.final.size * 4;
  for (const t of saved.layerInputs.values()) b += t.size * 4;
  return b;
}

export interface ForwardResult {
  /** per response: per-token log-probs */
  logprobs: Float32Array[];
  saved?: Saved;
}

/** content hash (cyrb53 over the bytes) for caches keyed by what went in */
export function contentHash(...parts: Array<ArrayLike<number> | ArrayBufferView>): string {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (const part of parts) {
    const bytes = ArrayBuffer.isView(part) ? new Uint8Array(part.buffer, part.byteOffset, part.byteLength)
      : new Uint8Array(Float64Array.from(part as ArrayLike<number>).buffer);
    for (let i = 0; i < bytes.length; i++) {
      h1 = Math.imul(h1 ^ bytes[i], 2654435761);
      h2 = Math.imul(h2 ^ bytes[i], 1597334677);
    }
    h1 = Math.imul(h1 ^ 0x9e3779b9, 2246822507);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

export interface EngineOptions {
  int4?: boolean;
  /** a fresh adapter (PEFT init from `seed`) or a loaded one */
  lora: LoraSettings | Adapter;
  seed?: number;
  /** switch caches off (for measuring what they save) */
  cacheFeatures?: boolean;
  cacheLowerStack?: boolean;
  /** most images whose features stay cached (oldest dropped first); a long run over many samples stays bounded */
  featureCacheSize?: number;
  /** most contexts whose lower-stack output stays cached */
  lowerStackCacheSize?: number;
}

/** a Map as a bounded cache: inserting past `max` drops the oldest entry */
function remember<V>(m: Map<string, V>, key: string, v: V, max: number): void {
  m.delete(key);
  m.set(key, v);
  while (m.size > max) m.delete(m.keys().next().value as string);
}

/** PEFT's LoRA init: A ~ kaiming_uniform(a=√5) = U(-1/√in, 1/√in), B = 0 */
export function initLora(module: string, r: number, inF: number, outF: number, scale: number, seed: number): LoraParam {
  let s = (seed ^ Number.parseInt(contentHash(new TextEncoder().encode(module)).slice(0, 6), 36)) >>> 0 || 1;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
  const bound = 1 / Math.sqrt(inF);
  const A = Float32Array.from({ length: r * inF }, () => (2 * next() - 1) * bound);
  return { module, r, scale, inFeatures: inF, outFeatures: outF, A, B: new Float32Array(outF * r) };
}

export class Engine {
  readonly weights: WeightStore;
  readonly lora = new Map<string, LoraParam>();
  /** LM layers carrying LoRA */
  readonly loraLayers = new Set<number>();
  /** does any LoRA sit in the tower or connector (then features depend on the adapter) */
  visionTrainable = false;
  private int4 = new Set<string>();
  private layerLora: Map<string, LoraInput> | null = null;
  private readonly sessions = new Map<string, Promise<{ s: Session; seg: Segment | SegmentWithBackward }>>();
  /** in-flight or done: concurrent contexts that need the same image wait for one tower run */
  private readonly featureCache = new Map<string, Promise<Tensor>>();
  private readonly lowerCache = new Map<string, Tensor>();
  readonly stats = { visionRuns: 0, layerRuns: 0, featureCacheHits: 0, lowerStackHits: 0 };
  /** bytes of frozen weights uploaded (int4 blocks count as stored) */
  weightBytes = 0;

  private constructor(readonly rt: Runtime, readonly spec: VlmSpec, private readonly o: EngineOptions) {
    this.weights = rt.weightStore();
  }

  static async create(rt: Runtime, spec: VlmSpec, ckpt: Checkpoint, o: EngineOptions): Promise<Engine> {
    const e = new Engine(rt, spec, o);
    const up = await uploadWeights(rt, e.weights, spec, ckpt, { int4: o.int4 });
    e.int4 = up.int4;
    e.weightBytes = up.bytes;
    e.setupLora();
    await e.uploadLora();
    return e;
  }

  private setupLora(): void {
    const o = this.o.lora, s = this.spec, pfx = prefixes(s);
    const info = new Map(parameterList(s, true).filter((p) => p.linear).map((p) => [p.name.slice(0, -'.weight'.length), p.linear!]));
    if ('modules' in o) {
      for (const [m, l] of o.modules) {
        const lin = info.get(m);
        if (!lin) continue; // e.g. a SigLIP head module LLaVA never runs
        this.lora.set(m, { module: m, r: l.r, scale: l.scale, inFeatures: lin.in, outFeatures: lin.out,
          A: Float32Array.from(l.A.data as ArrayLike<number>), B: Float32Array.from(l.B.data as ArrayLike<number>) });
      }
    } else {
      const first = o.topK ? s.text.layers - o.topK : 0;
      const scale = o.rslora ? o.alpha / Math.sqrt(o.r) : o.alpha / o.r;
      for (const m of linearModules(s)) {
        if (!peftMatches(m, o.targets)) continue;
        const layer = /\.layers\.(\d+)\./.exec(m);
        const inLm = m.startsWith(`${pfx.text}.layers.`);
        if (o.topK !== undefined && (!inLm || Number(layer![1]) < first)) continue;
        const lin = info.get(m)!;
        this.lora.set(m, initLora(m, o.r, lin.in, lin.out, scale, this.o.seed ?? 0));
      }
    }
    const lmPrefix = `${pfx.text}.layers.`;
    const perType = new Map<string, LoraInput>();
    for (const [m, p] of this.lora) {
      if (m.startsWith(lmPrefix)) {
        const [l, ...rest] = m.slice(lmPrefix.length).split('.');
        this.loraLayers.add(Number(l));
        const type = rest.join('.'), prev = perType.get(type);
        if (prev && (prev.r !== p.r || prev.scale !== p.scale)) {
          throw new Error(`LoRA on ${type} differs between layers (rank ${prev.r} vs ${p.r}); one layer graph needs one rank per module type`);
        }
        perType.set(type, { r: p.r, scale: p.scale });
      } else {
        this.visionTrainable = true;
      }
    }
    // every LoRA layer must adapt the same module types (one shared graph)
    for (const l of this.loraLayers) {
      for (const type of perType.keys()) {
        if (!this.lora.has(`${lmPrefix}${l}.${type}`)) throw new Error(`layer ${l} lacks LoRA on ${type} that other layers have`);
      }
    }
    this.layerLora = perType.size ? perType : null;
  }

  /** upload the host LoRA parameters (after an optimizer step or a resume) */
  async uploadLora(): Promise<void> {
    for (const p of this.lora.values()) {
      await this.weights.set(`${p.module}.lora_A.weight`, this.rt.tensor('float32', p.A, [p.r, p.inFeatures]));
      await this.weights.set(`${p.module}.lora_B.weight`, this.rt.tensor('float32', p.B, [p.outFeatures, p.r]));
    }
  }

  /** share another engine's frozen-tower feature cache (same checkpoint and precision: the same features) */
  adoptFeatureCache(other: Engine): void {
    for (const [k, v] of other.featureCache) this.featureCache.set(k, v);
  }

  private lowestLoraLayer(): number {
    return this.loraLayers.size ? Math.min(...this.loraLayers) : this.spec.text.layers;
  }

  private async session<S extends Segment>(key: string, make: () => S): Promise<{ s: Session; seg: S }> {
    let p = this.sessions.get(key);
    if (!p) {
      p = (async () => {
        const seg = make();
        const graph = 'backward' in seg ? (seg as unknown as SegmentWithBackward).backward.graph : seg.g;
        return { s: await this.rt.session(graph, { weights: this.weights }), seg };
      })();
      this.sessions.set(key, p);
    }
    return p as Promise<{ s: Session; seg: S }>;
  }

  private visionOpts(policy: boolean) {
    const lora = policy && this.visionTrainable
      ? new Map([...this.lora].filter(([m]) => !m.startsWith(`${prefixes(this.spec).text}.`)).map(([m, p]) => [m, { r: p.r, scale: p.scale }]))
      : null;
    return { lora, int4: this.int4, int4Block: (_m: string, K: number) => int4Block(K) };
  }

  /**
   * image features [n·tokensPerImage, D] for a context's images. With the tower frozen (or for the
   * reference) each image's features are computed once, cached by content hash and shared by every context
   * and by policy and reference; a tower with LoRA is run on the context's images with the adapter.
   */
  async features(images: Float32Array[], which: 'policy' | 'reference'): Promise<Tensor> {
    const policy = which === 'policy' && this.visionTrainable;
    if (policy) return this.runVision(images, true);
    const parts: Float32Array[] = [];
    let single: Tensor | undefined;
    for (const im of images) {
      const key = contentHash(im);
      let p = this.o.cacheFeatures !== false ? this.featureCache.get(key) : undefined;
      if (p) this.stats.featureCacheHits++;
      else {
        p = this.runVision([im], false);
        if (this.o.cacheFeatures !== false) remember(this.featureCache, key, p, this.o.featureCacheSize ?? 512);
      }
      single = await p;
      if (images.length > 1) parts.push((await single.getData()) as Float32Array);
    }
    if (images.length === 1) return single!;
    const all = new Float32Array(parts.reduce((a, x) => a + x.length, 0));
    let at = 0;
    for (const x of parts) { all.set(x, at); at += x.length; }
    return this.rt.tensor('float32', all, [all.length / this.spec.text.hidden, this.spec.text.hidden]);
  }

  private async runVision(images: Float32Array[], policy: boolean): Promise<Tensor> {
    const n = images.length, S = this.spec.vision.imageSize;
    const px = stackImages(images, this.spec);
    const { s } = await this.session(`vision:${n}:${policy}`, () => visionSegment(this.spec, n, this.visionOpts(policy)));
    this.stats.visionRuns++;
    return (await s.run({ pixel_values: this.rt.tensor('float32', px, [n, 3, S, S]) })).image_features;
  }

  private layerSegment(L: number, withLora: boolean): Segment {
    return layerSegment(this.spec, L, withLora ? this.layerLora : null, this.int4.size > 0, int4Block);
  }

  private layerSession(L: number, withLora: boolean) {
    return this.session(`layer:${L}:${withLora}`, () => this.layerSegment(L, withLora));
  }

  private layerBackwardSession(L: number, withLora: boolean) {
    return this.session(`layer-bw:${L}:${withLora}`, () => withBackward(this.layerSegment(L, withLora), true));
  }

  /**
   * Score responses packed behind one context. `which` = 'policy' (adapter on) or 'reference' (off);
   * `save` keeps what the backward pass needs.
   */
  async forward(ctx: ContextInput, responses: number[][], which: 'policy' | 'reference', save = false): Promise<ForwardResult> {
    const s = this.spec, layout = packSequence(ctx.prompt, responses), L = layout.ids.length;
    const policy = which === 'policy';
    const ids = BigInt64Array.from(layout.ids.map(BigInt));
    const { index, mask } = imagePositions(layout.ids, s, ctx.images.length);
    const { cos, sin } = ropeTables(layout.positions, s.text.headDim, s.text.ropeTheta);
    const feeds: Record<string, Tensor> = {
      rope_cos: this.rt.tensor('float32', cos, [L, s.text.headDim]),
      rope_sin: this.rt.tensor('float32', sin, [L, s.text.headDim]),
      attn_mask: this.rt.tensor('float32', layout.mask, [L, L]),
    };
    const low = policy ? this.lowestLoraLayer() : s.text.layers;
    // the frozen lower stack's output, per context, when neither the tower nor those layers carry LoRA
    const lowerKey = `${low}:${contentHash(Int32Array.from(layout.ids))}:${ctx.images.map((im) => contentHash(im)).join('+')}`;
    const cacheLower = this.o.cacheLowerStack !== false && !this.visionTrainable && low > 0 && low < s.text.layers;
    const saved: Saved | undefined = save
      ? { layout, feeds, layerInputs: new Map(), final: undefined as unknown as Tensor, images: ctx.images } : undefined;

    let h: Tensor | undefined = cacheLower ? this.lowerCache.get(lowerKey) : undefined;
    let startLayer = 0;
    if (h) { this.stats.lowerStackHits++; startLayer = low; } else {
      const feats = ctx.images.length ? await this.features(ctx.images, which)
        : this.rt.tensor('float32', new Float32Array(s.text.hidden), [1, s.text.hidden]);
      if (saved) saved.features = feats;
      const nF = Math.max(1, ctx.images.length * s.tokensPerImage);
      const { s: emb } = await this.session(`embed:${L}:${nF}`, () => embedSegment(s, L, nF));
      h = (await emb.run({ input_ids: this.rt.tensor('int64', ids, [1, L]), image_features: feats,
        image_index: this.rt.tensor('int64', index, [L]), image_mask: this.rt.tensor('bool', mask, [L, 1]) })).hidden_out;
      if (saved) Object.assign(saved.feeds, { input_ids: this.rt.tensor('int64', ids, [1, L]),
        image_index: this.rt.tensor('int64', index, [L]), image_mask: this.rt.tensor('bool', mask, [L, 1]) });
    }
    const firstSaved = this.visionTrainable ? 0 : low;
    for (let l = startLayer; l < s.text.layers; l++) {
      if (cacheLower && l === low) remember(this.lowerCache, lowerKey, h, this.o.lowerStackCacheSize ?? 256);
      if (saved && l >= firstSaved) saved.layerInputs.set(l, h);
      const withLora = policy && this.loraLayers.has(l);
      const { s: sess } = await this.layerSession(L, withLora);
      h = (await sess.run({ ...feeds, hidden_in: h }, undefined, layerAlias(s, l))).hidden_out;
      this.stats.layerRuns++;
    }
    const R = layout.targets.length;
    const { s: head } = await this.session(`head:${L}:${R}`, () => headSegment(s, L, R));
    const hf = { predict_index: this.rt.tensor('int64', BigInt64Array.from(layout.predictIndex.map(BigInt)), [R]),
      targets: this.rt.tensor('int64', BigInt64Array.from(layout.targets.map(BigInt)), [R]) };
    const lp = Float32Array.from((await (await head.run({ ...hf, hidden_in: h })).logprobs.getData()) as Float32Array);
    if (saved) { saved.final = h; Object.assign(saved.feeds, hf); }
    return { logprobs: layout.spans.map(([a, b]) => lp.slice(a, b)), saved };
  }

  /**
   * Back-propagate Σ_k <seeds_k, log p(response k)> from a saved policy forward, layer by layer from the top;
   * LoRA gradients are added into `grads` (by PEFT module tensor name).
   */
  async backward(saved: Saved, seeds: Float32Array[], grads: Map<string, Float64Array>): Promise<void> {
    const s = this.spec, L = saved.layout.ids.length, R = saved.layout.targets.length;
    const seed = new Float32Array(R);
    saved.layout.spans.forEach(([a], k) => seed.set(seeds[k], a));
    const acc = (name: string, t: Tensor) => addGradient(grads, name, t.data as Float32Array);
    const headBw = await this.session(`head-bw:${L}:${R}`, () => withBackward(headSegment(s, L, R), true));
    const hb = headBw.seg.backward;
    let d = (await headBw.s.run({ ...saved.feeds, hidden_in: saved.final, [hb.seeds.logprobs]: this.rt.tensor('float32', seed, [R]) }))[hb.grads.hidden_in];
    const stop = this.visionTrainable ? 0 : this.lowestLoraLayer();
    for (let l = s.text.layers - 1; l >= stop; l--) {
      const withLora = this.loraLayers.has(l);
      const { s: sess, seg } = await this.layerBackwardSession(L, withLora);
      const bw = seg.backward;
      const alias = layerAlias(s, l);
      const out = await sess.run({ ...saved.feeds, hidden_in: saved.layerInputs.get(l)!, [bw.seeds.hidden_out]: d }, undefined, alias);
      for (const [input, outName] of Object.entries(bw.grads)) {
        if (input === 'hidden_in') continue;
        acc(alias(input), out[outName]);
      }
      d = out[bw.grads.hidden_in];
      this.stats.layerRuns++;
    }
    if (this.visionTrainable && saved.features) {
      const nF = saved.features.dims[0];
      const emb = await this.session(`embed-bw:${L}:${nF}`, () => withBackward(embedSegment(s, L, nF), true));
      const eb = emb.seg.backward;
      const dFeat = (await emb.s.run({ ...saved.feeds, image_features: saved.features, [eb.seeds.hidden_out]: d }))[eb.grads.image_features];
      const n = saved.images.length, S = s.vision.imageSize;
      const px = stackImages(saved.images, s);
      const vis = await this.session(`vision-bw:${n}`, () => withBackward(visionSegment(s, n, this.visionOpts(true)), false));
      const vb = vis.seg.backward;
      const out = await vis.s.run({ pixel_values: this.rt.tensor('float32', px, [n, 3, S, S]), [vb.seeds.image_features]: dFeat });
      for (const [input, outName] of Object.entries(vb.grads)) acc(input, out[outName]);
    }
  }

  async release(): Promise<void> {
    for (const p of this.sessions.values()) await (await p).s.release();
    this.sessions.clear();
    this.weights.dispose();
  }
}
