import { describe, expect, it } from 'vitest';
import { main } from '../../src/node/cli.js';

describe('vco-lab bench ops', () => {
  it('prints raw ORT and runtime-layer MatMul throughput and their ratio, measured in one run', async () => {
    let out = '';
    const code = await main(
      ['bench', 'ops', '--sizes', '64,128', '--json'],
      (s) => {
        out += s;
      },
      () => {},
    );
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.suite).toBe('ops');
    expect(r.rows).toHaveLength(4);
    for (const row of r.rows) {
      expect(row.raw_gflops).toBeGreaterThan(0);
      expect(row.layer_over_raw).toBeCloseTo(row.layer_ms / row.raw_ms, 10);
    }
    expect(r.layer_over_raw_geomean).toBeGreaterThan(0);
  });

  it('refuses an unknown suite or bad sizes with a clear message', async () => {
    let err = '';
    expect(
      await main(
        ['bench', 'nope'],
        () => {},
        (s) => {
          err += s;
        },
      ),
    ).toBe(2);
    expect(err).toMatch(/unknown suite nope; suites: ops, int4/);
    expect(
      await main(
        ['bench', 'ops', '--sizes', '64,x'],
        () => {},
        (s) => {
          err += s;
        },
      ),
    ).toBe(2);
    expect(err).toMatch(/--sizes takes positive integers/);
  });
});
