/**
 * The engine: every VLM forward and backward in the project runs here (the page's worker, `vco-lab
 * reference`, `eval`, `train-default`, `toy-paper`, the trainers). It holds a model's weights on the device
 * once, its LoRA adapter on the host, and runs the segment graphs (segments.ts) over batches built by the one
 * feeds builder (feeds.ts), with sessions from the runtime's one session cache. Nothing is computed twice:
 *  - image features once per image content (the frozen tower), shared by every context and by policy and
 *    reference; recomputed with the adapter only when the tower carries LoRA;
 *  - both responses of a context in one packed pass;
 *  - with LoRA on the top k LM layers only, the frozen lower stack's output is cached per context;
 *  - the backward pass goes layer by layer from the top, recomputing each layer from its stored input.
 * Two plans share those graphs' builders: `segmented` (everything above; few long preference samples) and
 * `fused` (one graph, vision through head, forward and backward in one run; many short rows trained in every
 * weight, as the default model's SFT).
 *
 * LoRA A and B live on the host (the optimizer's side) and are uploaded into the weight store after each step.
 */
import type { Tensor } from 'onnxruntime-common';
import type { Checkpoint } from '../model/checkpoint.js';
import { matchAdapter } from '../model/adapter-check.js';
import { type Adapter, peftMatches } from '../model/peft.js';
import { type LoraInput, type VlmSpec, linearModules, parameterList, prefixes, stackImages } from '../model/vlm.js';
import { int4Block, uploadWeights } from '../model/weights.js';
import type { Runtime, Session, WeightStore } from '../runtime/runtime.js';
import { contentHash } from '../util/hash.js';
import { rng, stringSeed } from '../util/prng.js';
import { type BatchLayout, type BatchLayoutOptions, type ScoreRow, flattenSeeds, layoutBatch, splitLogprobs } from './feeds.js';
import { addGradient } from './grads.js';
import {
  type BatchShape,
  type Segment,
  type SegmentWithBackward,
  embedSegment,
  fusedSegment,
  headSegment,
  layerAlias,
  layerSegment,
  visionSegment,
  withBackward,
} from './segments.js';

export type { ScoreRow } from './feeds.js';
export { contentHash } from '../util/hash.js';

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

/** what a policy forward keeps for its backward pass */
export interface Saved {
  layout: BatchLayout;
  feeds: Record<string, Tensor>;
  /** input of every LM layer from the first one the backward pass must reach */
  layerInputs: Map<number, Tensor>;
  final: Tensor;
  features?: Tensor;
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

export interface BatchForwardResult {
  /** per row, per response: per-token log-probs */
  logprobs: Float32Array[][];
  saved?: Saved;
}

export interface EngineOptions {
  int4?: boolean;
  /** a fresh adapter (PEFT init from `seed`), a loaded one, or none (policy = reference) */
  lora?: LoraSettings | Adapter | null;
  seed?: number;
  /** switch caches off (for measuring what they save) */
  cacheFeatures?: boolean;
  cacheLowerStack?: boolean;
  /** most images whose features stay cached (oldest dropped first); a long run over many samples stays bounded */
  featureCacheSize?: number;
  /** most contexts whose lower-stack output stays cached */
  lowerStackCacheSize?: number;
  /** round every sequence length up to a multiple of this (fewer graph shapes to compile; scores unchanged) */
  lengthMultiple?: number;
}

export interface ScoreOptions {
  /** rows per batch (default 16) */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** a Map as a bounded cache: inserting past `max` drops the oldest entry */
function remember<V>(m: Map<string, V>, key: string, v: V, max: number): void {
  m.delete(key);
  m.set(key, v);
  while (m.size > max) m.delete(m.keys().next().value as string);
}

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** PEFT's LoRA init: A ~ kaiming_uniform(a=√5) = U(-1/√in, 1/√in), B = 0; one stream per module and seed */
export function initLora(module: string, r: number, inF: number, outF: number, scale: number, seed: number): LoraParam {
  const rand = rng((seed ^ stringSeed(module)) >>> 0);
  const bound = 1 / Math.sqrt(inF);
  const A = Float32Array.from({ length: r * inF }, () => (2 * rand() - 1) * bound);
  return { module, r, scale, inFeatures: inF, outFeatures: outF, A, B: new Float32Array(outF * r) };
}

function abortIf(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('cancelled', 'AbortError');
}

export class Engine {
  readonly weights: WeightStore;
  readonly lora = new Map<string, LoraParam>();
  /** LM layers carrying LoRA */
  readonly loraLayers = new Set<number>();
  /** does any LoRA sit in the tower or connector (then features depend on the adapter) */
  visionTrainable = false;
  private int4 = new Set<string>();
  /** rank and scale per adapted module type of the shared layer graph (null: no LM layer carries LoRA) */
  private layerLora: Map<string, LoraInput> | null = null;
  /** in-flight or done: concurrent contexts that need the same image wait for one tower run */
  private readonly featureCache = new Map<string, Promise<Tensor>>();
  private readonly lowerCache = new Map<string, Tensor>();
  readonly stats = { visionRuns: 0, layerRuns: 0, featureCacheHits: 0, lowerStackHits: 0 };
  /** what the loaded adapter's check found that changes no number (modules left as the base model has them) */
  adapterNotes: string[] = [];
  /** bytes of frozen weights uploaded (int4 blocks count as stored) */
  weightBytes = 0;
  /** what the graphs of this model are, for session-cache keys (spec and precision) */
  private readonly modelKey: string;

  private constructor(
    readonly rt: Runtime,
    readonly spec: VlmSpec,
    private readonly o: EngineOptions,
  ) {
    this.weights = rt.weightStore();
    const { defaulted: _d, ...graphSpec } = spec;
    this.modelKey = contentHash(JSON.stringify(graphSpec), o.int4 ? 'int4' : 'fp32');
  }

  static async create(
    rt: Runtime,
    spec: VlmSpec,
    ckpt: Checkpoint,
    o: EngineOptions = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<Engine> {
    const e = new Engine(rt, spec, o);
    const up = await uploadWeights(rt, e.weights, spec, ckpt, { int4: o.int4, onProgress });
    e.int4 = up.int4;
    e.weightBytes = up.bytes;
    await e.setAdapter(o.lora ?? null, o.seed ?? 0);
    return e;
  }

  /** linears stored as int4 blocks (0: float32 weights) */
  get int4Modules(): number {
    return this.int4.size;
  }

  /** the model's sequence-length rounding */
  get lengthMultiple(): number {
    return this.o.lengthMultiple ?? 1;
  }

  /**
   * Put an adapter on the model (policy = base + adapter, reference = base) or take it off (null): a fresh one
   * from settings (PEFT's init from `seed`) or a loaded PEFT adapter. Its A and B are uploaded.
   */
  async setAdapter(lora: LoraSettings | Adapter | null, seed = 0): Promise<void> {
    for (const p of this.lora.values()) {
      for (const ab of ['A', 'B']) this.weights.delete(`${p.module}.lora_${ab}.weight`);
    }
    this.lora.clear();
    this.adapterNotes = [];
    this.loraLayers.clear();
    this.visionTrainable = false;
    this.layerLora = null;
    this.lowerCache.clear();
    if (!lora) return;
    const s = this.spec,
      pfx = prefixes(s);
    const info = new Map(
      parameterList(s, true)
        .filter((p) => p.linear)
        .map((p) => [p.name.slice(0, -'.weight'.length), p.linear!]),
    );
    if ('modules' in lora) {
      // every tensor fits a targeted module of this model, or the loader says why (adapter-check.ts)
      const match = matchAdapter(s, lora);
      this.adapterNotes = match.notes;
      for (const [name, m] of match.modules) {
        const l = lora.modules.get(name)!,
          lin = info.get(m)!;
        this.lora.set(m, {
          module: m,
          r: l.r,
          scale: l.scale,
          inFeatures: lin.in,
          outFeatures: lin.out,
          A: Float32Array.from(l.A.data as ArrayLike<number>),
          B: Float32Array.from(l.B.data as ArrayLike<number>),
        });
      }
    } else {
      const first = lora.topK ? s.text.layers - lora.topK : 0;
      const scale = lora.rslora ? lora.alpha / Math.sqrt(lora.r) : lora.alpha / lora.r;
      for (const m of linearModules(s)) {
        if (!peftMatches(m, lora.targets)) continue;
        const layer = /\.layers\.(\d+)\./.exec(m);
        const inLm = m.startsWith(`${pfx.text}.layers.`);
        if (lora.topK !== undefined && (!inLm || Number(layer![1]) < first)) continue;
        const lin = info.get(m)!;
        this.lora.set(m, initLora(m, lora.r, lin.in, lin.out, scale, seed));
      }
    }
    const lmPrefix = `${pfx.text}.layers.`;
    const perType = new Map<string, LoraInput>();
    for (const [m, p] of this.lora) {
      if (m.startsWith(lmPrefix)) {
        const [l, ...rest] = m.slice(lmPrefix.length).split('.');
        this.loraLayers.add(Number(l));
        const type = rest.join('.'),
          prev = perType.get(type);
        if (prev && (prev.r !== p.r || prev.scale !== p.scale)) {
          throw new Error(
            `LoRA on ${type} differs between layers (rank ${prev.r} vs ${p.r}); one layer graph needs one rank per module type`,
          );
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
    await this.uploadLora();
  }

  /** upload the host LoRA parameters (after an optimizer step or a resume) */
  async uploadLora(): Promise<void> {
    for (const p of this.lora.values()) {
      await this.weights.set(`${p.module}.lora_A.weight`, this.rt.tensor('float32', p.A, [p.r, p.inFeatures]));
      await this.weights.set(`${p.module}.lora_B.weight`, this.rt.tensor('float32', p.B, [p.outFeatures, p.r]));
    }
  }

  /** replace frozen weights by parameter name (full-weight training); the feature caches no longer hold */
  async setWeights(weights: ReadonlyMap<string, Float32Array>): Promise<void> {
    const shapes = new Map(parameterList(this.spec).map((p) => [p.name, p.shape]));
    for (const [name, data] of weights) {
      const shape = shapes.get(name);
      if (!shape) throw new Error(`internal: ${name} is not a parameter of this model`);
      await this.weights.set(name, this.rt.tensor('float32', data, shape));
    }
    this.featureCache.clear();
    this.lowerCache.clear();
  }

  /** share another engine's frozen-tower feature cache (same checkpoint and precision: the same features) */
  adoptFeatureCache(other: Engine): void {
    for (const [k, v] of other.featureCache) this.featureCache.set(k, v);
  }

  private lowestLoraLayer(): number {
    return this.loraLayers.size ? Math.min(...this.loraLayers) : this.spec.text.layers;
  }

  private loraKey(lora: ReadonlyMap<string, LoraInput> | null): string {
    return lora
      ? [...lora]
          .map(([m, l]) => `${m}:${l.r}:${l.scale}`)
          .sort()
          .join(',')
      : 'none';
  }

  /**
   * a compiled segment from the runtime's session cache, keyed by this model and what the segment is; the
   * segment (its seed and gradient names) travels with the session, so an engine that finds a session another
   * engine compiled does not rebuild the graph
   */
  private async session<S extends Segment>(key: string, make: () => S): Promise<{ s: Session; seg: S }> {
    const s = await this.rt.sessions.get(`${this.modelKey}|${key}`, () => {
      const seg = make();
      return { graph: 'backward' in seg ? (seg as unknown as SegmentWithBackward).backward.graph : seg.g, meta: seg };
    });
    return { s, seg: s.meta as S };
  }

  private run(s: Session, feeds: Record<string, Tensor>, alias?: (input: string) => string) {
    return s.run(feeds, { weights: this.weights, alias });
  }

  private visionLora(policy: boolean): Map<string, LoraInput> | null {
    if (!policy || !this.visionTrainable) return null;
    const text = `${prefixes(this.spec).text}.`;
    return new Map([...this.lora].filter(([m]) => !m.startsWith(text)).map(([m, p]) => [m, { r: p.r, scale: p.scale }]));
  }

  private visionOpts(policy: boolean) {
    return { lora: this.visionLora(policy), int4: this.int4, int4Block: (_m: string, K: number) => int4Block(K) };
  }

  /**
   * image features [capacity·tokensPerImage, D] for images in order (capacity ≥ the images; the rest is
   * zero). With the tower frozen (or for the reference) each image's features are computed once, cached by
   * content hash and shared by every context and by policy and reference; a tower with LoRA runs on the
   * images with the adapter.
   */
  async features(images: ReadonlyArray<Float32Array>, which: 'policy' | 'reference', capacity = images.length): Promise<Tensor> {
    const T = this.spec.tokensPerImage,
      D = this.spec.text.hidden;
    if (which === 'policy' && this.visionTrainable) {
      const f = await this.runVision(images, true);
      return capacity === images.length ? f : this.padFeatures([(await f.getData()) as Float32Array], capacity);
    }
    const keys = images.map((im) => contentHash(im));
    const missing = [...new Set(keys.filter((k) => this.o.cacheFeatures === false || !this.featureCache.has(k)))];
    this.stats.featureCacheHits += keys.length - missing.length;
    const mine = new Map<string, Promise<Tensor>>();
    // the uncached images go through the tower in chunks whose sizes are powers of two (5 = 4 + 1): few graph
    // shapes to compile, and no tile computed for padding
    for (let at = 0; at < missing.length;) {
      const n = Math.min(2 ** Math.floor(Math.log2(missing.length - at)), 16);
      const chunk = missing.slice(at, at + n);
      const ims = chunk.map((k) => images[keys.indexOf(k)]);
      const run = this.runVision(ims, false);
      chunk.forEach((k, i) => {
        const one = run.then(async (t) =>
          this.rt.tensor('float32', ((await t.getData()) as Float32Array).slice(i * T * D, (i + 1) * T * D), [T, D]),
        );
        mine.set(k, one);
        if (this.o.cacheFeatures !== false) remember(this.featureCache, k, one, this.o.featureCacheSize ?? 512);
      });
      at += chunk.length;
    }
    const parts = await Promise.all(keys.map((k) => mine.get(k) ?? this.featureCache.get(k)!));
    if (parts.length === 1 && capacity === 1) return parts[0];
    return this.padFeatures(await Promise.all(parts.map(async (t) => (await t.getData()) as Float32Array)), capacity);
  }

  private padFeatures(parts: Float32Array[], capacity: number): Tensor {
    const T = this.spec.tokensPerImage,
      D = this.spec.text.hidden;
    const all = new Float32Array(Math.max(1, capacity) * T * D);
    let at = 0;
    for (const x of parts) {
      all.set(x, at);
      at += x.length;
    }
    return this.rt.tensor('float32', all, [all.length / D, D]);
  }

  private async runVision(images: ReadonlyArray<Float32Array>, policy: boolean): Promise<Tensor> {
    const n = images.length,
      S = this.spec.vision.imageSize;
    const lora = this.visionLora(policy);
    const { s } = await this.session(`vision:${n}:${this.loraKey(lora)}`, () =>
      visionSegment(this.spec, n, this.visionOpts(policy)),
    );
    this.stats.visionRuns++;
    return (await this.run(s, { pixel_values: this.rt.tensor('float32', stackImages(images, this.spec), [n, 3, S, S]) }))
      .image_features;
  }

  private layerSegment(shape: BatchShape, withLora: boolean) {
    const lora = withLora ? this.layerLora : null;
    return {
      key: `${shape.B}x${shape.L}:${this.loraKey(lora)}`,
      make: () => layerSegment(this.spec, shape, lora, this.int4.size > 0, int4Block),
    };
  }

  private layerSession(shape: BatchShape, withLora: boolean) {
    const { key, make } = this.layerSegment(shape, withLora);
    return this.session(`layer:${key}`, make);
  }

  private layerBackwardSession(shape: BatchShape, withLora: boolean) {
    const { key, make } = this.layerSegment(shape, withLora);
    return this.session(`layer-bw:${key}`, () => withBackward(make(), { activation: true }));
  }

  /** the host feeds of a batch layout that every segment reads */
  private layoutFeeds(lay: BatchLayout) {
    const { B, L, R } = lay.shape,
      hd = this.spec.text.headDim,
      t = this.rt;
    return {
      embed: {
        input_ids: t.tensor('int64', lay.ids, [B, L]),
        image_index: t.tensor('int64', lay.imageIndex, [B * L]),
        image_mask: t.tensor('bool', lay.imageMask, [B * L, 1]),
      },
      layer: {
        rope_cos: t.tensor('float32', lay.cos, [B, 1, L, hd]),
        rope_sin: t.tensor('float32', lay.sin, [B, 1, L, hd]),
        attn_mask: t.tensor('float32', lay.mask, [B, 1, L, L]),
      },
      head: { predict_index: t.tensor('int64', lay.predict, [R]), targets: t.tensor('int64', lay.targets, [R]) },
    };
  }

  private layout(rows: ReadonlyArray<ScoreRow>, o: BatchLayoutOptions = {}): BatchLayout {
    return layoutBatch(this.spec, rows, { lengthMultiple: this.lengthMultiple, ...o });
  }

  /**
   * Score rows in one batch (segmented plan). `which` = 'policy' (adapter on) or 'reference' (off); `save`
   * keeps what the backward pass needs; `rows` pads the batch to that many slots.
   */
  async forwardBatch(
    rows: ReadonlyArray<ScoreRow>,
    which: 'policy' | 'reference',
    o: { save?: boolean } & BatchLayoutOptions = {},
  ): Promise<BatchForwardResult> {
    const s = this.spec,
      lay = this.layout(rows, o),
      { B, L } = lay.shape;
    const policy = which === 'policy';
    const f = this.layoutFeeds(lay);
    // the layers below the lowest LoRA layer are frozen for the policy and the reference alike: their output,
    // per batch of contexts, is computed once and serves both (when the tower carries no LoRA)
    const low = this.lowestLoraLayer();
    const lowerKey = `${low}:${B}x${L}:${contentHash(lay.ids)}:${lay.images.map((im) => contentHash(im)).join('+')}`;
    const cacheLower = this.o.cacheLowerStack !== false && !this.visionTrainable && low > 0 && low < s.text.layers;
    const saved: Saved | undefined = o.save
      ? { layout: lay, feeds: { ...f.layer, ...f.head }, layerInputs: new Map(), final: undefined as unknown as Tensor }
      : undefined;

    let h: Tensor | undefined = cacheLower ? this.lowerCache.get(lowerKey) : undefined;
    let startLayer = 0;
    if (h) {
      this.stats.lowerStackHits++;
      startLayer = low;
    } else {
      const tiles = Math.max(1, ...rows.map((r) => r.images.length));
      // a padded batch reserves the same feature rows whatever its images (one embed graph per batch shape)
      const capacity = o.rows && o.rows > rows.length ? B * nextPow2(tiles) : lay.images.length;
      const nF = Math.max(1, capacity) * s.tokensPerImage;
      const feats = lay.images.length
        ? await this.features(lay.images, which, capacity)
        : this.rt.tensor('float32', new Float32Array(nF * s.text.hidden), [nF, s.text.hidden]);
      if (saved) {
        saved.features = feats;
        Object.assign(saved.feeds, f.embed);
      }
      const { s: emb } = await this.session(`embed:${B}x${L}:${nF}`, () => embedSegment(s, lay.shape, nF));
      h = (await this.run(emb, { ...f.embed, image_features: feats })).hidden_out;
    }
    const firstSaved = this.visionTrainable ? 0 : low;
    for (let l = startLayer; l < s.text.layers; l++) {
      if (cacheLower && l === low) remember(this.lowerCache, lowerKey, h, this.o.lowerStackCacheSize ?? 256);
      if (saved && l >= firstSaved) saved.layerInputs.set(l, h);
      const { s: sess } = await this.layerSession(lay.shape, policy && this.loraLayers.has(l));
      h = (await this.run(sess, { ...f.layer, hidden_in: h }, layerAlias(s, l))).hidden_out;
      this.stats.layerRuns++;
    }
    const { s: head } = await this.session(`head:${B}x${L}:${lay.shape.R}`, () => headSegment(s, lay.shape));
    const lp = Float32Array.from((await (await this.run(head, { ...f.head, hidden_in: h })).logprobs.getData()) as Float32Array);
    if (saved) saved.final = h;
    return { logprobs: splitLogprobs(lay, lp), saved };
  }

  /** score responses packed behind one context (a batch of one row) */
  async forward(ctx: ContextInput, responses: number[][], which: 'policy' | 'reference', save = false): Promise<ForwardResult> {
    const r = await this.forwardBatch([{ prompt: ctx.prompt, images: ctx.images, responses }], which, { save });
    return { logprobs: r.logprobs[0], saved: r.saved };
  }

  /**
   * Score many rows, `batch` at a time, in batches of one shape (rows padded; L rounded to a multiple of 16
   * at least), so a long list compiles few graphs: per row, per response, per-token log-probs.
   */
  async scoreRows(rows: ReadonlyArray<ScoreRow>, which: 'policy' | 'reference', o: ScoreOptions = {}): Promise<Float32Array[][]> {
    const B = Math.max(1, Math.min(o.batch ?? 16, rows.length));
    const lengthMultiple = Math.max(16, this.lengthMultiple);
    const out: Float32Array[][] = [];
    for (let i = 0; i < rows.length; i += B) {
      abortIf(o.signal);
      const r = await this.forwardBatch(rows.slice(i, i + B), which, { rows: B, lengthMultiple });
      out.push(...r.logprobs);
      o.onProgress?.(Math.min(rows.length, i + B), rows.length);
    }
    return out;
  }

  /**
   * Back-propagate Σ_rows Σ_k <seeds[row][k], log p(response k of row)> from a saved policy forward, layer by
   * layer from the top; LoRA gradients are added into `grads` (by PEFT module tensor name).
   */
  async backward(
    saved: Saved,
    seeds: ReadonlyArray<ReadonlyArray<ArrayLike<number>>>,
    grads: Map<string, Float64Array>,
  ): Promise<void> {
    const s = this.spec,
      lay = saved.layout,
      { B, L, R } = lay.shape;
    const seed = flattenSeeds(lay, seeds);
    const acc = (name: string, t: Tensor) => addGradient(grads, name, t.data as Float32Array);
    const headBw = await this.session(`head-bw:${B}x${L}:${R}`, () =>
      withBackward(headSegment(s, lay.shape), { activation: true }),
    );
    const hb = headBw.seg.backward;
    let d = (
      await this.run(headBw.s, {
        ...saved.feeds,
        hidden_in: saved.final,
        [hb.seeds.logprobs]: this.rt.tensor('float32', seed, [R]),
      })
    )[hb.grads.hidden_in];
    const stop = this.visionTrainable ? 0 : this.lowestLoraLayer();
    for (let l = s.text.layers - 1; l >= stop; l--) {
      const { s: sess, seg } = await this.layerBackwardSession(lay.shape, this.loraLayers.has(l));
      const bw = seg.backward;
      const alias = layerAlias(s, l);
      const out = await this.run(sess, { ...saved.feeds, hidden_in: saved.layerInputs.get(l)!, [bw.seeds.hidden_out]: d }, alias);
      for (const [input, outName] of Object.entries(bw.grads)) {
        if (input === 'hidden_in') continue;
        acc(alias(input), out[outName]);
      }
      d = out[bw.grads.hidden_in];
      this.stats.layerRuns++;
    }
    if (this.visionTrainable && saved.features && lay.images.length) {
      const nF = saved.features.dims[0];
      const emb = await this.session(`embed-bw:${B}x${L}:${nF}`, () =>
        withBackward(embedSegment(s, lay.shape, nF), { activation: true }),
      );
      const eb = emb.seg.backward;
      const dFeat = (await this.run(emb.s, { ...saved.feeds, image_features: saved.features, [eb.seeds.hidden_out]: d }))[
        eb.grads.image_features
      ];
      const n = lay.images.length,
        S = s.vision.imageSize;
      const lora = this.visionLora(true);
      const vis = await this.session(`vision-bw:${n}:${this.loraKey(lora)}`, () =>
        withBackward(visionSegment(s, n, this.visionOpts(true)), {}),
      );
      const vb = vis.seg.backward;
      const dRows = (dFeat.data as Float32Array).subarray(0, n * s.tokensPerImage * s.text.hidden);
      const out = await this.run(vis.s, {
        pixel_values: this.rt.tensor('float32', stackImages(lay.images, s), [n, 3, S, S]),
        [vb.seeds.image_features]: this.rt.tensor('float32', Float32Array.from(dRows), [n * s.tokensPerImage, s.text.hidden]),
      });
      for (const [input, outName] of Object.entries(vb.grads)) acc(input, out[outName]);
    }
  }

  /**
   * The fused plan: one graph from pixels to log-probs and its backward, for a batch of rows. Returns every
   * scored token's log-prob and the gradient of Σ seed·log p for every weight of the model (`allWeights`)
   * or for the LoRA A/B, by store name. Shapes come from `o` (rows, length, scored, images) so that every
   * step of a training run uses one graph.
   */
  async fusedGradient(
    rows: ReadonlyArray<ScoreRow>,
    seeds: ReadonlyArray<ReadonlyArray<ArrayLike<number>>>,
    o: BatchLayoutOptions & { images?: number; allWeights?: boolean } = {},
  ): Promise<{ logprobs: Float32Array[][]; grads: Map<string, Float32Array> }> {
    const s = this.spec,
      lay = this.layout(rows, o),
      { B, L, R } = lay.shape,
      S = s.vision.imageSize;
    const nImages = Math.max(o.images ?? 0, lay.images.length, 1);
    // pad with copies of the first image so the pixel rows fill the shape (their features are never gathered)
    const tiles = [...lay.images];
    while (tiles.length < nImages) tiles.push(tiles[0] ?? new Float32Array(3 * S * S));
    const all = !!o.allWeights;
    const lora = all ? null : this.loraPlan();
    const { s: sess, seg } = await this.session(`fused-bw:${B}x${L}:${R}:${nImages}:${all ? 'all' : this.loraKey(lora)}`, () =>
      withBackward(fusedSegment(s, lay.shape, nImages, { lora, int4: this.int4, int4Block: (_m, K) => int4Block(K) }), {
        allWeights: all,
        keepOutput: true,
      }),
    );
    const f = this.layoutFeeds(lay),
      bw = seg.backward;
    const out = await this.run(sess, {
      ...f.embed,
      ...f.layer,
      ...f.head,
      pixel_values: this.rt.tensor('float32', stackImages(tiles, s), [nImages, 3, S, S]),
      [bw.seeds.logprobs]: this.rt.tensor('float32', flattenSeeds(lay, seeds), [R]),
    });
    const grads = new Map<string, Float32Array>();
    for (const [input, name] of Object.entries(bw.grads)) grads.set(input, (await out[name].getData()) as Float32Array);
    return { logprobs: splitLogprobs(lay, (await out.logprobs.getData()) as Float32Array), grads };
  }

  /** the whole model's LoRA plan (module -> rank and scale) */
  private loraPlan(): Map<string, LoraInput> | null {
    return this.lora.size ? new Map([...this.lora].map(([m, p]) => [m, { r: p.r, scale: p.scale }])) : null;
  }

  /** drop this engine's weights and caches (compiled sessions stay in the runtime's cache for the next engine) */
  async release(): Promise<void> {
    this.featureCache.clear();
    this.lowerCache.clear();
    this.weights.dispose();
  }
}
