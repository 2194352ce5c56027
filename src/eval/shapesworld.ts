/** The ShapesWorld benchmark's items as yes/no questions on rendered images. */
import { benchmarkSet } from '../data/bench.js';
import { render } from '../data/raster.js';
import type { YesNoItem } from './yesno.js';

export const BENCH_CATEGORIES = ['existence', 'attribute', 'relation', 'trap'] as const;

export function shapesBenchmark(perCategory = 200, seed?: number): YesNoItem[] {
  return benchmarkSet({ perCategory, seed }).map((it) => ({
    category: it.category,
    image: render(it.scene),
    question: it.question,
    answer: it.answer,
  }));
}
