/** The ShapesWorld benchmark's items as yes/no questions on rendered images. */
import { benchmarkSet } from '../data/bench.js';
import { render } from '../data/raster.js';
import type { YesNoItem } from './yesno.js';

export function shapesBenchmark(perCategory = 200, seed?: number): YesNoItem[] {
  return benchmarkSet({ perCategory, seed }).map((it) => ({
    category: it.category,
    image: it.pair ? [render(it.pair.scenes[0]), render(it.pair.scenes[1])] : render(it.scene),
    anchor: it.pair?.anchor,
    question: it.question,
    answer: it.answer,
  }));
}
