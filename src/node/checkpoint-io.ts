/** Checkpoint folders on disk, written atomically: a temporary sibling folder, then one rename. */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
  openSync,
  fsyncSync,
  closeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { FileBytes } from '../engine/checkpoint.js';

export function writeFolderAtomic(dir: string, files: FileBytes): void {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  for (const [name, bytes] of Object.entries(files)) {
    const f = join(tmp, name);
    writeFileSync(f, bytes);
    const fd = openSync(f, 'r');
    fsyncSync(fd);
    closeSync(fd);
  }
  swapIn(tmp, dir);
}

/** the complete folder `tmp` becomes `dir`: a crash before the rename leaves the old folder intact, after it the new one is complete */
function swapIn(tmp: string, dir: string): void {
  const parent = dirname(dir);
  const old = existsSync(dir) ? join(parent, `.${basename(dir)}.old-${process.pid}-${Date.now()}`) : null;
  if (old) renameSync(dir, old);
  renameSync(tmp, dir);
  if (old) rmSync(old, { recursive: true, force: true });
}

/** a folder whose files something else writes (a PyTorch worker), made visible at once: a temporary sibling, then a rename */
export async function fillFolderAtomic(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  try {
    await fill(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  swapIn(tmp, dir);
}

export function readFolder(dir: string): FileBytes {
  if (!existsSync(dir)) throw new Error(`${dir} not found`);
  const out: FileBytes = {};
  for (const f of readdirSync(dir)) out[f] = new Uint8Array(readFileSync(join(dir, f)));
  return out;
}
