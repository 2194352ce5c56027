import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** ../shared/reference beside the clone (CI lays it there too); VCO_LAB_REFERENCE overrides */
export const REFERENCE_DIR = process.env.VCO_LAB_REFERENCE ?? resolve(REPO, '..', 'shared', 'reference');

export const PUBLIC_CASES = ['idefics3-public', 'llava-public', 'idefics3-public-visionlora', 'llava-public-visionlora'].map(
  (name) => ({ name, dir: join(REFERENCE_DIR, name) }),
);

/** cases made with the same generator for shapes the shared set lacks (scripts/make-reference-cases.py) */
export const FIXTURE_CASES = ['idefics3-attnbias-llama3rope', 'llava-linearrope-legacy-tied'].map((name) => ({
  name,
  dir: join(REPO, 'tests', 'fixtures', 'reference', name),
}));

export function requireReference(): void {
  if (!existsSync(join(REFERENCE_DIR, 'README.md'))) {
    throw new Error(
      `reference cases not found at ${REFERENCE_DIR}: put ../shared/reference beside the clone ` + 'or set VCO_LAB_REFERENCE',
    );
  }
}

/** a seeded PRNG (mulberry32) so that every random test is repeatable: ShapesWorld's own */
export { rng } from '../src/data/world.js';

/** run `vco-lab ARGS` in this process, capturing its exit code, stdout and stderr */
export async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import('../src/node/cli.js');
  let out = '',
    err = '';
  const code = await main(
    args,
    (s) => (out += s),
    (s) => (err += s),
  );
  return { code, out, err };
}
