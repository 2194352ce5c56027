import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { caseScores, checkLossOnly, loadCase, maskedScore, sequenceKey } from '../../src/node/reference-case.js';
import { main } from '../../src/node/cli.js';
import { PUBLIC_CASES, REPO, requireReference } from '../helpers.js';

beforeAll(requireReference);

describe('vco-lab reference --loss-only on the public HF reference cases', () => {
  for (const { name, dir } of PUBLIC_CASES) {
    it(`${name}: both presets' loss (1e-9 rel), dL/ds (1e-9 abs) and gates match`, () => {
      const r = checkLossOnly(loadCase(dir));
      expect(r.max_errors.loss_rel).toBeLessThanOrEqual(1e-9);
      expect(r.max_errors.dlds_abs).toBeLessThanOrEqual(1e-9);
      expect(r.max_errors.gate_mismatches).toBe(0);
      expect(r.pass).toBe(true);
    });
  }

  it('the installed command prints one JSON object and exits 0', () => {
    const stdout = execFileSync(
      process.execPath,
      [join(REPO, 'bin/vco-lab.mjs'), 'reference', PUBLIC_CASES[0].dir, '--loss-only', '--json'],
      { encoding: 'utf8' },
    );
    const r = JSON.parse(stdout);
    expect(r.pass).toBe(true);
    expect(Object.keys(r.presets).sort()).toEqual(['paper', 'reference-code']);
    expect(r.max_errors.loss_rel).toBeLessThanOrEqual(1e-9);
  });

  it('every case row maps to a distinct sequence key per sample (24 rows = 3 samples x 8 scores)', () => {
    const c = loadCase(PUBLIC_CASES[1].dir);
    const seen = new Set(c.sequences.map((s) => `${s.sample}/${sequenceKey(s)}`));
    expect(seen.size).toBe(c.sequences.length);
    const scores = caseScores(c);
    const s0 = c.sequences[0];
    expect(scores[s0.sample].policy[sequenceKey(s0)]).toBe(maskedScore(s0.policy_token_logprobs, s0.score_mask));
  });
});

describe('the reference check on reshuffled cases (same format, other layout)', () => {
  it('rows in any order and samples renumbered still pass: the reader keys rows by their fields', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vco-case-'));
    cpSync(PUBLIC_CASES[2].dir, dir, { recursive: true });
    const file = join(dir, 'case.json');
    const c = JSON.parse(readFileSync(file, 'utf8'));
    const B = c.samples.length;
    const perm = [...Array(B).keys()].reverse(); // new index of old sample k is perm[k]
    const samples = new Array(B);
    c.samples.forEach((s: unknown, k: number) => {
      samples[perm[k]] = s;
    });
    c.samples = samples;
    for (const s of c.sequences) s.sample = perm[s.sample];
    c.sequences.reverse();
    // expected per-direction arrays are [d1 samples..., d2 samples...]: permute within each half
    const permuteDirs = (xs: number[]) => {
      const out = new Array(xs.length);
      xs.forEach((x, i) => {
        const d = Math.floor(i / B),
          k = i % B;
        out[d * B + perm[k]] = x;
      });
      return out;
    };
    for (const p of ['paper', 'reference-code']) {
      const l = c.loss[p];
      for (const q of ['h_single', 'h_multi', 'p_single', 'p_multi', 'vcdist_active']) l[q] = permuteDirs(l[q]);
      for (const br of ['single', 'multi'])
        for (const role of ['c', 'r']) {
          l.dloss_dsequence_logp[br][role] = permuteDirs(l.dloss_dsequence_logp[br][role]);
        }
    }
    writeFileSync(file, JSON.stringify(c));
    const r = checkLossOnly(loadCase(dir));
    expect(r.pass).toBe(true);
    expect(r.max_errors.dlds_abs).toBeLessThanOrEqual(1e-9);
  });
});

describe('the reference check fails when it should', () => {
  function mutatedCase(mutate: (c: Record<string, any>) => void): string {
    const dir = mkdtempSync(join(tmpdir(), 'vco-case-'));
    cpSync(PUBLIC_CASES[0].dir, dir, { recursive: true });
    const file = join(dir, 'case.json');
    const c = JSON.parse(readFileSync(file, 'utf8'));
    mutate(c);
    writeFileSync(file, JSON.stringify(c));
    return dir;
  }

  it('a perturbed expected loss exits 1 with pass: false', async () => {
    const dir = mutatedCase((c) => {
      c.loss.paper.value *= 1 + 1e-6;
    });
    let out = '';
    const code = await main(
      ['reference', dir, '--loss-only', '--json'],
      (s) => {
        out += s;
      },
      () => {},
    );
    expect(code).toBe(1);
    const r = JSON.parse(out);
    expect(r.pass).toBe(false);
    expect(r.presets.paper.pass).toBe(false);
    expect(r.presets['reference-code'].pass).toBe(true);
  });

  it('a token log-prob changed by 1e-6 shows in dL/ds and the loss', () => {
    const dir = mutatedCase((c) => {
      const s = c.sequences.find((x: any) => x.branch === 'multi');
      s.policy_token_logprobs[0] += 0.05;
    });
    const r = checkLossOnly(loadCase(dir));
    expect(r.pass).toBe(false);
  });

  it('hyper-parameters are read from the case, not assumed: a changed gamma fails the stored values', () => {
    const dir = mutatedCase((c) => {
      c.hyperparameters.paper.gamma = 0.9;
    });
    const r = checkLossOnly(loadCase(dir));
    expect(r.presets.paper.pass).toBe(false);
    expect(r.presets['reference-code'].pass).toBe(true);
  });

  it('malformed cases name the file and the field', () => {
    const noLoss = mutatedCase((c) => {
      delete c.loss['reference-code'];
    });
    expect(() => loadCase(noLoss)).toThrow(/case\.json: field "loss\.reference-code" is missing/);
    const badMask = mutatedCase((c) => {
      c.sequences[3].score_mask.pop();
    });
    expect(() => loadCase(badMask)).toThrow(/case\.json: field "sequences\[3\]\.score_mask" has/);
    const unknownHp = mutatedCase((c) => {
      c.hyperparameters.reference_code.lambda_x = 1;
    });
    expect(() => checkLossOnly(loadCase(unknownHp))).toThrow(/hyperparameters\.reference_code\.lambda_x/);
    const r = spawnSync(process.execPath, [join(REPO, 'bin/vco-lab.mjs'), 'reference', '/nonexistent', '--loss-only'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\/nonexistent\/case\.json not found/);
  });
});
