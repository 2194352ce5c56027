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
  // a crash before this line leaves the old folder intact; after it, the new one is complete
  const old = existsSync(dir) ? join(parent, `.${basename(dir)}.old-${process.pid}-${Date.now()}`) : null;
  if (old) renameSync(dir, old);
  renameSync(tmp, dir);
  if (old) rmSync(old, { recursive: true, force: true });
}

export function readFolder(dir: string): FileBytes {
  if (!existsSync(dir)) throw new Error(`${dir} not found`);
  const out: FileBytes = {};
  for (const f of readdirSync(dir)) out[f] = new Uint8Array(readFileSync(join(dir, f)));
  return out;
}
