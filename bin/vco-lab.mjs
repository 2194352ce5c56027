#!/usr/bin/env node
// The `vco-lab` command. The sources are TypeScript; tsx compiles them on load, so there is no build step.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// --ep cuda / --device cuda: the NVIDIA libraries `npm run setup:cuda` installed must be on LD_LIBRARY_PATH
// before the process starts (the dynamic loader reads it once), so run again with it set
const paths = join(dirname(fileURLToPath(import.meta.url)), '..', '.cache', 'cuda', 'ld-library-path');
const argv = process.argv.slice(2);
const wantsCuda = argv.some((a) => a === 'cuda' || /^--(ep|device)=cuda$/.test(a));
if (wantsCuda && existsSync(paths) && !process.env.VCO_LAB_CUDA_ENV) {
  const extra = readFileSync(paths, 'utf8').trim();
  const env = {
    ...process.env,
    VCO_LAB_CUDA_ENV: '1',
    LD_LIBRARY_PATH: [extra, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
  };
  const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env });
  process.exit(r.status ?? 1);
}

const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/node/cli.ts');
process.exitCode = await main(argv);
