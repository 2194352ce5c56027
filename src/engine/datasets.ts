/**
 * Preference sets as the engine trains on them: ShapesWorld sets (rendered on the fly) and records read from
 * files (images decoded by the caller), each turned into an EngineSample with the official prompt
 * construction for the model's tokenizer and image processor. Samples are built (and so checked) before the
 * first step: a row whose text or image the model cannot take is reported with its place.
 */
import type { PreferenceRecord } from '../data/dataset.js';
import { render } from '../data/raster.js';
import type { SetSample } from '../data/sets.js';
import type { PixelImage } from '../model/processor.js';
import type { ChatModel } from './rows.js';
import { type EngineSample, engineSample } from './sample.js';

export function shapesworldSamples(m: ChatModel, set: readonly SetSample[]): EngineSample[] {
  return set.map((s) =>
    engineSample(
      `sw${s.index}-${s.sample.id}`,
      {
        question: s.sample.prompt,
        chosen: s.sample.chosen,
        rejected: s.sample.rejected,
        chosenSpans: s.sample.chosenSpans,
        rejectedSpans: s.sample.rejectedSpans,
        swap: s.swap,
      },
      { m: m.processor.process(render(s.sample.m)), "m'": m.processor.process(render(s.mPrime)) },
      m.tokenizer,
      m.placeholder,
    ),
  );
}

/** an image already decoded, or a way to decode it again (so a long run keeps only the file's bytes) */
export type ImageSource = PixelImage | (() => PixelImage);

/**
 * Processed image tiles of a run's samples, kept by least recent use up to `maxBytes`: a set of N samples
 * holds only its files' bytes and this much pixel data (a SmolVLM image split into 5 tiles of 512² is 16 MB
 * of float32), and a tile dropped here is decoded and processed again when its sample comes back.
 */
export class TileCache {
  private readonly entries = new Map<string, Float32Array[]>();
  private bytes = 0;
  constructor(readonly maxBytes = 1 << 30) {}

  get(key: string, make: () => Float32Array[]): Float32Array[] {
    let t = this.entries.get(key);
    if (t) {
      this.entries.delete(key);
      this.entries.set(key, t);
      return t;
    }
    t = make();
    this.entries.set(key, t);
    this.bytes += t.reduce((n, x) => n + x.byteLength, 0);
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes || k === key) break;
      this.entries.delete(k);
      this.bytes -= v.reduce((n, x) => n + x.byteLength, 0);
    }
    return t;
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }
}

/**
 * records with their images; `swap` alternates (every other sample shows m′ first), which keeps a run
 * repeatable where the official code draws it at random. Images given as decoders are processed once here
 * (the prompt needs the image's token text) and afterwards on demand through `tiles`.
 */
export function recordSamples(
  m: ChatModel,
  records: readonly PreferenceRecord[],
  images: ReadonlyArray<[ImageSource, ImageSource]>,
  tiles: TileCache = new TileCache(),
): EngineSample[] {
  return records.map((r, i) => {
    try {
      const load = (k: 0 | 1) => {
        const src = images[i][k];
        return m.processor.process(typeof src === 'function' ? src() : src);
      };
      const [pm, pmp] = [load(0), load(1)];
      // the trainer caches reference scores by id: the row index keeps ids unique even where a file repeats one
      const s = engineSample(
        `${i}:${r.id}`,
        {
          question: r.prompt,
          chosen: r.chosen,
          rejected: r.rejected,
          chosenSpans: r.chosenSpans,
          rejectedSpans: r.rejectedSpans,
          swap: i % 2 === 1,
        },
        { m: pm, "m'": pmp },
        m.tokenizer,
        m.placeholder,
      );
      if (typeof images[i][0] !== 'function') return s;
      // lazily decoded: the tiles live in the bounded cache, not in the sample
      const key = s.id;
      s.images = {
        get m() {
          return tiles.get(`${key}|m`, () => load(0).tiles);
        },
        get "m'"() {
          return tiles.get(`${key}|m'`, () => load(1).tiles);
        },
      };
      return s;
    } catch (e) {
      throw new Error(`${r.where}: ${(e as Error).message}`, { cause: e });
    }
  });
}
