/**
 * An independent oracle for the tests: reads a ShapesWorld question with its own regexes and answers it from
 * the scene graph by direct comparisons, without going through src/data/language.ts.
 */
import type { Scene } from '../../src/data/world.js';

const PLURALS: Record<string, string> = { circles: 'circle', squares: 'square', triangles: 'triangle', stars: 'star' };
const NUM = ['no', 'one', 'two', 'three', 'four'];

export function oracle(scene: Scene, q: string): string {
  const objs = scene.objects;
  const find = (c: string, s: string) => objs.filter((o) => o.color === c && o.shape === s);
  let m: RegExpMatchArray | null;
  if ((m = q.match(/^Is there a (\w+) (\w+) in the image\?$/))) return find(m[1], m[2]).length ? 'Yes.' : 'No.';
  if ((m = q.match(/^Is the (\w+) (\w+)\?$/))) {
    const hits = objs.filter((o) => o.shape === m![1]);
    if (hits.length !== 1) throw new Error(`attribute question about a shape that occurs ${hits.length} times: ${q}`);
    return hits[0].color === m[2] ? 'Yes.' : 'No.';
  }
  if ((m = q.match(/^What color is the (\w+)\?$/))) {
    const hits = objs.filter((o) => o.shape === m![1]);
    if (hits.length !== 1) throw new Error(`color question about a shape that occurs ${hits.length} times: ${q}`);
    return `The ${m[1]} is ${hits[0].color}.`;
  }
  if ((m = q.match(/^Where is the (\w+) (\w+)\?$/))) {
    const [o] = find(m[1], m[2]);
    if (!o) throw new Error(`where question about an absent object: ${q}`);
    return `Row ${NUM[o.row + 1]}, column ${NUM[o.col + 1]}.`;
  }
  if ((m = q.match(/^How many (\w+) are there\?$/))) {
    const s = PLURALS[m[1]],
      n = objs.filter((o) => o.shape === s).length;
    return n === 0 ? `There are no ${m[1]}.` : n === 1 ? `There is one ${s}.` : `There are ${NUM[n]} ${m[1]}.`;
  }
  if ((m = q.match(/^Is the (\w+) (\w+) (left of|right of|above|below) the (\w+) (\w+)\?$/))) {
    const [a] = find(m[1], m[2]),
      [b] = find(m[4], m[5]);
    if (!a || !b) throw new Error(`relation question about an absent object: ${q}`);
    const t = { 'left of': a.col < b.col, 'right of': a.col > b.col, above: a.row < b.row, below: a.row > b.row }[m[3]]!;
    const f = { 'left of': a.col > b.col, 'right of': a.col < b.col, above: a.row > b.row, below: a.row < b.row }[m[3]]!;
    if (!t && !f) throw new Error(`relation neither strictly true nor strictly false: ${q}`);
    return t ? 'Yes.' : 'No.';
  }
  throw new Error(`unknown question form: ${q}`);
}
