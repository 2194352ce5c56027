import { describe, expect, it } from 'vitest';
import {
  type EditType,
  type PreferenceSample,
  type Scenario,
  diffSpans,
  makePreferenceSample,
  syntheticNegative,
} from '../../src/data/edits.js';
import { describe as describeScene, relationOf, words } from '../../src/data/language.js';
import { footprint, render } from '../../src/data/raster.js';
import { type Scene, type SceneObject, rng, validateScene } from '../../src/data/world.js';

const SCENARIOS: Scenario[] = ['A', 'B'];
const TYPES: EditType[] = ['existence', 'attribute', 'relation'];
const SEEDS = 40;

const cache = new Map<string, PreferenceSample>();
function sample(seed: number, scenario: Scenario, type: EditType): PreferenceSample {
  const k = `${seed}${scenario}${type}`;
  if (!cache.has(k)) cache.set(k, makePreferenceSample(seed, { scenario, type }));
  return cache.get(k)!;
}

/** the fields of each object that differ between two scenes, by id; 'presence' for added/removed ids */
function graphDiff(a: Scene, b: Scene): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>(),
    ids = new Set([...a.objects, ...b.objects].map((o) => o.id));
  for (const id of ids) {
    const x = a.objects.find((o) => o.id === id),
      y = b.objects.find((o) => o.id === id);
    const d = new Set<string>();
    if (!x || !y) d.add('presence');
    else for (const f of ['shape', 'color', 'size', 'row', 'col'] as const) if (x[f] !== y[f]) d.add(f);
    if (d.size) out.set(id, d);
  }
  return out;
}

/** tokens outside the spans, by the `words` rule */
function outside(text: string, spans: [number, number][]): string[] {
  let rest = '',
    at = 0;
  for (const [s, e] of spans) {
    rest += text.slice(at, s) + ' ';
    at = e;
  }
  return words(rest + text.slice(at));
}

describe('contrastive edits', () => {
  it.each(SCENARIOS.flatMap((s) => TYPES.map((t) => [s, t] as const)))(
    "scenario %s, %s: m' differs from m in exactly the edit",
    (scenario, type) => {
      for (let seed = 0; seed < SEEDS; seed++) {
        const s = sample(seed, scenario, type),
          { edit } = s;
        expect(edit.scenario).toBe(scenario);
        expect(edit.type).toBe(type);
        validateScene(s.m);
        validateScene(s.mPrime);
        expect(edit.before).toEqual(s.m);
        expect(edit.after).toEqual(s.mPrime);
        expect([s.mPrime.background, s.mPrime.style]).toEqual([s.m.background, s.m.style]);
        const diff = graphDiff(s.m, s.mPrime);
        expect([...diff.keys()].sort()).toEqual([...edit.changedIds].sort());
        const fields = [...diff.values()].map((d) => [...d].sort().join(','));
        if (type === 'attribute') expect(fields).toEqual(['color']);
        if (type === 'existence') expect(fields).toEqual(['presence']);
        if (type === 'relation') {
          expect(diff.size).toBe(2);
          const [a, b] = edit.changedIds.map((id) => s.m.objects.find((o) => o.id === id)!);
          const [a2, b2] = edit.changedIds.map((id) => s.mPrime.objects.find((o) => o.id === id)!);
          expect([a2.row, a2.col, b2.row, b2.col]).toEqual([b.row, b.col, a.row, a.col]);
          for (const d of diff.values()) expect([...d].every((f) => f === 'row' || f === 'col')).toBe(true);
          // the relation sentence is about exactly these two objects, and it flips
          const low = [...s.m.objects]
            .sort((x, y) => x.id - y.id)
            .slice(0, 2)
            .map((o) => o.id);
          expect([...edit.changedIds].sort()).toEqual(low.sort());
        }
        if (type === 'existence') {
          const [id] = edit.changedIds,
            inM = s.m.objects.some((o) => o.id === id);
          expect(inM).toBe(scenario === 'B'); // A adds the hallucinated object, B removes one
          if (scenario === 'B') {
            expect(s.m.objects.length).toBeGreaterThanOrEqual(3);
            const low = [...s.m.objects]
              .sort((x, y) => x.id - y.id)
              .slice(0, 2)
              .map((o) => o.id);
            expect(low).not.toContain(id);
          }
        }
      }
    },
  );

  it.each(SCENARIOS.flatMap((s) => TYPES.map((t) => [s, t] as const)))(
    'scenario %s, %s: images differ only inside the changed cells',
    (scenario, type) => {
      for (let seed = 0; seed < SEEDS; seed++) {
        const s = sample(seed, scenario, type),
          a = render(s.m),
          b = render(s.mPrime);
        const cells = edit2cells(s);
        let changed = 0;
        for (let y = 0; y < 64; y++)
          for (let x = 0; x < 64; x++) {
            const inside = cells.some((f) => x >= f.x0 && x < f.x1 && y >= f.y0 && y < f.y1);
            const k = 3 * (y * 64 + x),
              same = a.data[k] === b.data[k] && a.data[k + 1] === b.data[k + 1] && a.data[k + 2] === b.data[k + 2];
            if (!inside && !same) throw new Error(`seed ${seed}: pixel (${x}, ${y}) changed outside the edited cells`);
            if (!same) changed++;
          }
        expect(changed).toBeGreaterThan(0);
      }
    },
  );

  it.each(SCENARIOS.flatMap((s) => TYPES.map((t) => [s, t] as const)))('scenario %s, %s: texts and spans', (scenario, type) => {
    for (let seed = 0; seed < SEEDS; seed++) {
      const s = sample(seed, scenario, type);
      expect(s.prompt).toBe('Describe the image.');
      expect(s.chosen).toBe(describeScene(s.m));
      expect(s.rejected).toBe(describeScene(s.mPrime));
      expect(s.chosen).not.toBe(s.rejected);
      expect(s.hallucinated).not.toBe(s.chosen);
      expect(s.chosenSpans.length + s.rejectedSpans.length).toBeGreaterThan(0);
      for (const [text, spans] of [
        [s.chosen, s.chosenSpans],
        [s.rejected, s.rejectedSpans],
      ] as const) {
        let prev = -1;
        for (const [a, b] of spans) {
          expect(0 <= a && a < b && b <= text.length && a > prev).toBe(true);
          // spans start and end on token boundaries and do not begin or end with a space
          expect(text.slice(a, b).trim()).toBe(text.slice(a, b));
          expect(/\w/.test(text[a - 1] ?? ' ') && /\w/.test(text[a])).toBe(false);
          expect(/\w/.test(text[b - 1]) && /\w/.test(text[b] ?? ' ')).toBe(false);
          prev = b;
        }
      }
      expect(outside(s.chosen, s.chosenSpans)).toEqual(outside(s.rejected, s.rejectedSpans));
      if (type === 'attribute') {
        // exactly the colour word changes
        const [id] = s.edit.changedIds;
        const c0 = s.m.objects.find((o) => o.id === id)!.color,
          c1 = s.mPrime.objects.find((o) => o.id === id)!.color;
        expect(s.chosenSpans.map(([a, b]) => s.chosen.slice(a, b)).every((w) => w === c0)).toBe(true);
        expect(s.rejectedSpans.map(([a, b]) => s.rejected.slice(a, b)).every((w) => w === c1)).toBe(true);
      }
    }
  });

  it("scenario A makes the chosen hallucinated detail true in m' (and it was false in m)", () => {
    for (let seed = 0; seed < SEEDS; seed++)
      for (const type of TYPES) {
        const s = sample(seed, 'A', type),
          d = s.edit.detail!;
        expect(d.type).toBe(type);
        const find = (sc: Scene, id: number) => sc.objects.find((o) => o.id === id);
        if (d.type === 'attribute') {
          expect(find(s.m, d.id)!.color).toBe(d.from);
          expect(find(s.mPrime, d.id)!.color).toBe(d.to);
        } else if (d.type === 'existence') {
          const has = (sc: Scene) =>
            sc.objects.some((o: SceneObject) => o.color === d.object.color && o.shape === d.object.shape);
          expect(has(s.m)).toBe(false);
          expect(has(s.mPrime)).toBe(true);
          expect(s.rejected).toContain(`a ${d.object.size} ${d.object.color} ${d.object.shape}`);
        } else {
          expect(relationOf(find(s.m, d.a)!, find(s.m, d.b)!)).not.toBe(d.rel);
          expect(relationOf(find(s.mPrime, d.a)!, find(s.mPrime, d.b)!)).toBe(d.rel);
        }
        // the claim as y' words it is now in y'_new
        if (d.type === 'relation') {
          const a = find(s.m, d.a)!,
            b = find(s.m, d.b)!;
          expect(s.rejected).toContain(`The ${a.color} ${a.shape} is ${d.rel} the ${b.color} ${b.shape}.`);
          expect(s.hallucinated).toContain(`is ${d.rel} the`);
        }
      }
  });

  it('is deterministic from the seed and covers both scenarios and all types by default', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 200; seed++) {
      const s = makePreferenceSample(seed);
      expect(makePreferenceSample(seed)).toEqual(s);
      seen.add(`${s.edit.scenario}${s.edit.type}`);
    }
    expect(seen.size).toBe(6);
    expect(
      makePreferenceSample(3, { starYellow: 1 })
        .m.objects.filter((o) => o.shape === 'star')
        .every((o) => o.color === 'yellow'),
    ).toBe(true);
  });

  it('diffSpans merges neighbouring words and keeps case', () => {
    const d = diffSpans('The image shows a small blue star.', 'The image shows a large red star.');
    expect(d.a).toEqual([[18, 28]]);
    expect(d.b).toEqual([[18, 27]]);
    expect(diffSpans('A b.', 'a B.')).toEqual({ a: [], b: [] });
  });

  it("synthetic negatives keep y'_new faithful with a new layout, background and style", () => {
    for (let seed = 0; seed < 120; seed++) {
      const s = makePreferenceSample(seed),
        n = syntheticNegative(s, rng(seed));
      validateScene(n);
      expect(describeScene(n)).toBe(s.rejected);
      expect(n.background).not.toBe(s.mPrime.background);
      expect(n.style).not.toBe(s.mPrime.style);
      const strip = (sc: Scene) => sc.objects.map(({ row: _r, col: _c, ...o }) => o);
      expect(strip(n)).toEqual(strip(s.mPrime));
      expect(n.objects.some((o, i) => o.row !== s.mPrime.objects[i].row || o.col !== s.mPrime.objects[i].col)).toBe(true);
      expect(syntheticNegative(s, rng(seed))).toEqual(n);
    }
  });
});

/** footprints of the changed objects, in m and in m' */
function edit2cells(s: PreferenceSample) {
  return s.edit.changedIds.flatMap((id) => [s.m, s.mPrime].flatMap((sc) => sc.objects.filter((o) => o.id === id).map(footprint)));
}
