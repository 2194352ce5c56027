import { describe, expect, it } from 'vitest';
import { COLORS, SHAPES, type Scene, pick, randomScene, rng, shuffle, validateScene } from '../../src/data/world.js';

describe('ShapesWorld scenes', () => {
  it('keeps the mulberry32 stream every seed in the data and the tests depends on', () => {
    // mulberry32's first outputs for seed 12345 (Tommy Ettinger's reference algorithm)
    const a = rng(12345);
    expect([a(), a(), a()]).toEqual([0.9797282677609473, 0.3067522644996643, 0.484205421525985]);
  });

  it('keeps the invariants over many seeds', () => {
    const counts = [0, 0, 0, 0, 0];
    for (let seed = 0; seed < 2000; seed++) {
      const s = randomScene(rng(seed), { starYellow: null });
      expect(() => validateScene(s)).not.toThrow();
      counts[s.objects.length]++;
      expect(new Set(s.objects.map((o) => `${o.row},${o.col}`)).size).toBe(s.objects.length);
      expect(new Set(s.objects.map((o) => `${o.color} ${o.shape}`)).size).toBe(s.objects.length);
      expect(s.objects.map((o) => o.id)).toEqual([...s.objects.keys()]);
    }
    expect(counts[0]).toBe(0);
    for (const n of [1, 2, 3, 4]) expect(counts[n]).toBeGreaterThan(400);
  });

  it('honours minObjects/maxObjects and is deterministic', () => {
    for (let seed = 0; seed < 200; seed++) {
      const s = randomScene(rng(seed), { minObjects: 3, maxObjects: 3 });
      expect(s.objects.length).toBe(3);
      expect(randomScene(rng(seed))).toEqual(randomScene(rng(seed)));
    }
  });

  it('plants the "stars are yellow" prior with probability starYellow', () => {
    const starColors = (p: number | null) => {
      const rand = rng(99),
        out: string[] = [];
      for (let i = 0; i < 3000; i++)
        for (const o of randomScene(rand, { starYellow: p }).objects) if (o.shape === 'star') out.push(o.color);
      return out;
    };
    expect(starColors(1).every((c) => c === 'yellow')).toBe(true);
    expect(starColors(0).some((c) => c === 'yellow')).toBe(false);
    const p95 = starColors(0.95),
      frac = p95.filter((c) => c === 'yellow').length / p95.length;
    expect(frac).toBeGreaterThan(0.9);
    const uni = starColors(null),
      fu = uni.filter((c) => c === 'yellow').length / uni.length;
    expect(fu).toBeGreaterThan(0.14);
    expect(fu).toBeLessThan(0.26);
  });

  it('rejects broken scenes with a reason', () => {
    const ok: Scene = {
      background: 0,
      style: 0,
      objects: [
        { id: 0, shape: 'circle', color: 'red', size: 'small', row: 0, col: 0 },
        { id: 1, shape: 'star', color: 'blue', size: 'large', row: 1, col: 1 },
      ],
    };
    expect(() => validateScene(ok)).not.toThrow();
    const broken = (f: (s: Scene) => void) => {
      const s = structuredClone(ok);
      f(s);
      return () => validateScene(s);
    };
    expect(
      broken((s) => {
        s.objects[1].color = 'red';
        s.objects[1].shape = 'circle';
      }),
    ).toThrow(/"red circle" occurs twice/);
    expect(
      broken((s) => {
        s.objects[1].row = 0;
        s.objects[1].col = 0;
      }),
    ).toThrow(/two objects in cell/);
    expect(
      broken((s) => {
        s.objects = [];
      }),
    ).toThrow(/0 objects/);
    expect(
      broken((s) => {
        s.objects[1].id = 0;
      }),
    ).toThrow(/id 0 occurs twice/);
    expect(
      broken((s) => {
        s.objects[0].row = 4;
      }),
    ).toThrow(/row 4/);
    expect(
      broken((s) => {
        s.background = 3;
      }),
    ).toThrow(/background/);
    expect(
      broken((s) => {
        (s.objects[0] as { shape: string }).shape = 'hexagon';
      }),
    ).toThrow(/unknown shape/);
    expect(
      broken((s) => {
        for (let i = 2; i < 5; i++)
          s.objects.push({ id: i, shape: SHAPES[i % 4], color: COLORS[i], size: 'small', row: 3, col: i - 2 });
      }),
    ).toThrow(/5 objects/);
  });

  it('pick and shuffle are seeded', () => {
    const xs = [1, 2, 3, 4, 5, 6, 7];
    expect(shuffle(rng(3), xs)).toEqual(shuffle(rng(3), xs));
    expect([...shuffle(rng(3), xs)].sort()).toEqual(xs);
    expect(xs.includes(pick(rng(4), xs))).toBe(true);
  });
});
