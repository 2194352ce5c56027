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

/**
 * records with their decoded images; `swap` alternates (every other sample shows m′ first), which keeps a
 * run repeatable where the official code draws it at random
 */
export function recordSamples(
  m: ChatModel,
  records: readonly PreferenceRecord[],
  images: ReadonlyArray<[PixelImage, PixelImage]>,
): EngineSample[] {
  return records.map((r, i) => {
    try {
      // the trainer caches reference scores by id: the row index keeps ids unique even where a file repeats one
      return engineSample(
        `${i}:${r.id}`,
        {
          question: r.prompt,
          chosen: r.chosen,
          rejected: r.rejected,
          chosenSpans: r.chosenSpans,
          rejectedSpans: r.rejectedSpans,
          swap: i % 2 === 1,
        },
        { m: m.processor.process(images[i][0]), "m'": m.processor.process(images[i][1]) },
        m.tokenizer,
        m.placeholder,
      );
    } catch (e) {
      throw new Error(`${r.where}: ${(e as Error).message}`, { cause: e });
    }
  });
}
