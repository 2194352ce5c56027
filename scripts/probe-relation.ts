/**
 * What a model folder knows about where things are, beyond the benchmark's relation accuracy:
 * - "where": for 200 scenes, "Where is the <colour> <shape>?" scored against all 16 answers
 *   "Row r, column c." (the default model's SFT answer form); the argmax's row, column and cell accuracy
 *   (chance 25%, 25%, 6.25%). This is the single hop, object -> place, that a relation makes twice.
 * - relation: 400 training-distribution relation questions (half true), the margin log p(yes) − log p(no)
 *   as a score: AUROC overall, per relation word and per object count, and the mean |margin| (a model that
 *   cannot tell puts both answers near 50%: AUROC 0.5, |margin| near 0).
 * - two-image: the benchmark's 200 two-image items (`vco-lab eval`'s), accuracy by the edit that separates
 *   the two images (item i is about an edit of type EDIT_TYPES[i mod 3]).
 *
 *   npx tsx scripts/probe-relation.ts [MODEL_DIR]      (default: models/shapesworld-tiny)
 */
import { EDIT_TYPES } from '../src/data/edits.js';
import { RELATIONS, type Relation, randomQA } from '../src/data/language.js';
import { render } from '../src/data/raster.js';
import { pick, randomScene, rng } from '../src/data/world.js';
import { answerRow } from '../src/engine/rows.js';
import { shapesBenchmark } from '../src/eval/shapesworld.js';
import { type YesNoItem, yesNoMargins } from '../src/eval/yesno.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../src/node/model-dir.js';
import { createNodeRuntime } from '../src/runtime/node.js';

const dir = process.argv[2] ?? DEFAULT_MODEL_DIR;
const m = await loadModelDir(await createNodeRuntime('cpu'), dir);
const NUMBER = ['one', 'two', 'three', 'four'];
// seeds below 2^31 but far from the training streams' (seed·1000003+17 for small seeds)
const rand = rng(0x7fff1234);

const where = { row: 0, col: 0, cell: 0, n: 200 };
for (let i = 0; i < where.n; i++) {
  const s = randomScene(rand, { starYellow: 0.95 }),
    o = pick(rand, s.objects),
    img = render(s);
  const rows = [];
  for (let r = 0; r < 4; r++)
    for (let c = 0; c < 4; c++)
      rows.push(answerRow(m, img, `Where is the ${o.color} ${o.shape}?`, `Row ${NUMBER[r]}, column ${NUMBER[c]}.`));
  const total = (await m.engine.scoreRows(rows, 'policy', { batch: 16 })).map((x) => x[0].reduce((a, b) => a + b, 0));
  const best = total.indexOf(Math.max(...total)),
    row = Math.floor(best / 4) === o.row,
    col = best % 4 === o.col;
  where.row += +row;
  where.col += +col;
  where.cell += +(row && col);
}
const pct = (x: number) => `${((100 * x) / where.n).toFixed(1)}%`;
console.log(
  `${dir}\nwhere (n=${where.n}): row ${pct(where.row)}, column ${pct(where.col)}, cell ${pct(where.cell)}  (chance 25%, 25%, 6.25%)`,
);

const items: { truth: boolean; rel: Relation; objects: number }[] = [],
  questions: YesNoItem[] = [];
while (items.length < 400) {
  const s = randomScene(rand, { starYellow: 0.95 }),
    qa = randomQA(s, 'relation', rand, items.length % 2 === 0);
  if (!qa) continue;
  const answer = qa.answer === 'Yes.' ? 'yes' : 'no';
  items.push({
    truth: answer === 'yes',
    rel: RELATIONS.find((r) => qa.question.includes(` ${r} `))!,
    objects: s.objects.length,
  });
  questions.push({ category: 'relation', image: render(s), question: qa.question, answer });
}
const margin = await yesNoMargins(m.engine, m, questions);
function auroc(idx: number[]): string {
  const pos = idx.filter((i) => items[i].truth).map((i) => margin[i]),
    neg = idx.filter((i) => !items[i].truth).map((i) => margin[i]);
  let c = 0;
  for (const p of pos) for (const q of neg) c += p > q ? 1 : p === q ? 0.5 : 0;
  return (c / (pos.length * neg.length)).toFixed(3);
}
const all = items.map((_, i) => i);
const acc = all.filter((i) => margin[i] > 0 === items[i].truth).length / all.length;
const meanAbs = margin.reduce((a, x) => a + Math.abs(x), 0) / margin.length;
console.log(
  `relation (n=${all.length}): accuracy ${(100 * acc).toFixed(1)}%, AUROC ${auroc(all)}, mean |margin| ${meanAbs.toFixed(3)} nats`,
);
console.log(
  `  AUROC by relation: ${RELATIONS.map((r) => `${r.split(' ')[0]} ${auroc(all.filter((i) => items[i].rel === r))}`).join(', ')}`,
);
console.log(
  `  AUROC by objects in the scene: ${[2, 3, 4].map((n) => `${n}: ${auroc(all.filter((i) => items[i].objects === n))}`).join(', ')}`,
);

// the benchmark's two-image items, each category's in item order (benchmarkSet), so item i is two[i]
const two = shapesBenchmark(200).filter((it) => it.category === 'two-image');
const twoMargins = await yesNoMargins(m.engine, m, two);
const byType = EDIT_TYPES.map((type, t) => {
  const idx = two.map((_, i) => i).filter((i) => i % EDIT_TYPES.length === t);
  const right = idx.filter((i) => twoMargins[i] > 0 === (two[i].answer === 'yes')).length;
  return `${type} ${((100 * right) / idx.length).toFixed(1)}% (n=${idx.length})`;
});
console.log(`two-image (the benchmark's ${two.length}) by edit type: ${byType.join(', ')}`);
await m.engine.release();
