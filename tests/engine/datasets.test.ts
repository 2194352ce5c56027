/**
 * Preference sets for training hold their images' bytes, not their pixels: samples built from decoders give the
 * same tiles as samples built from decoded images, and the tile cache stays within its byte budget.
 */
import { describe, expect, it } from 'vitest';
import type { PreferenceRecord } from '../../src/data/dataset.js';
import { makePreferenceSample } from '../../src/data/edits.js';
import { render } from '../../src/data/raster.js';
import { TileCache, recordSamples } from '../../src/engine/datasets.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';

describe('training sets in memory', () => {
  it('the tile cache drops the least recently used tiles beyond its budget, and makes them again on demand', () => {
    const c = new TileCache(3 * 400);
    let made = 0;
    const tile = () => {
      made++;
      return [new Float32Array(100)]; // 400 bytes
    };
    for (const k of ['a', 'b', 'c']) c.get(k, tile);
    c.get('a', tile); // a is now the most recent
    c.get('d', tile); // evicts b
    expect(c.size).toEqual({ entries: 3, bytes: 1200 });
    expect(made).toBe(4);
    c.get('a', tile);
    expect(made).toBe(4);
    c.get('b', tile);
    expect(made).toBe(5);
  });

  it('samples from decoders equal samples from decoded images', async () => {
    const rt = await createNodeRuntime('cpu');
    const m = await loadModelDir(rt, DEFAULT_MODEL_DIR);
    const recs: PreferenceRecord[] = [];
    const pixels: Array<[ReturnType<typeof render>, ReturnType<typeof render>]> = [];
    for (let i = 0; i < 4; i++) {
      const s = makePreferenceSample(i + 1);
      recs.push({
        where: `row ${i + 1}`,
        id: s.id,
        prompt: s.prompt,
        chosen: s.chosen,
        rejected: s.rejected,
        chosenSpans: s.chosenSpans,
        rejectedSpans: s.rejectedSpans,
        images: [{ path: 'm.png' }, { path: 'mp.png' }],
      });
      pixels.push([render(s.m), render(s.mPrime)]);
    }
    const eager = recordSamples(m, recs, pixels);
    const tiles = new TileCache(2 * 3 * 64 * 64 * 4); // two tiles' worth
    const lazy = recordSamples(
      m,
      recs,
      pixels.map(([a, b]) => [() => a, () => b] as const),
      tiles,
    );
    for (let i = 0; i < 4; i++) {
      expect(lazy[i].prompts).toEqual(eager[i].prompts);
      expect(lazy[i].images.m).toEqual(eager[i].images.m);
      expect(lazy[i].images["m'"]).toEqual(eager[i].images["m'"]);
    }
    expect(tiles.size.entries).toBeLessThanOrEqual(2);
    await m.engine.release();
  });
});
