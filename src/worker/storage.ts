/**
 * Downloaded model files kept in IndexedDB (through `idb`), so a second load of the same model reads no byte
 * from the network: `cachingFetch` answers a stored URL from the database and stores a fresh download only
 * once its body has been read whole (a cancelled or failed download leaves nothing behind). The worker owns
 * this; the page only lists, deletes and shows the quota.
 */
import { type DBSchema, type IDBPDatabase, openDB } from 'idb';

export interface StoredFile {
  /** the URL it was fetched from (the key) */
  url: string;
  /** the server answered 404: an optional file the repo does not have (remembered so a second load asks nothing) */
  absent?: boolean;
  /** the model (repo or base URL) it belongs to, for grouping */
  model: string;
  name: string;
  bytes: number;
  savedAt: number;
}

/** a training run in the page: its config and data, its latest checkpoint and its metrics (runs.ts) */
export interface StoredRun {
  id: string;
  [k: string]: unknown;
}

/** an adapter in the page's library: PEFT files and what made them */
export interface StoredAdapter {
  id: string;
  name: string;
  baseModel: string;
  objective: string;
  steps: number;
  createdAt: number;
  metrics: Record<string, number>;
  files: Record<string, Uint8Array>;
}

interface VcoDb extends DBSchema {
  files: { key: string; value: StoredFile & { blob: Blob }; indexes: { model: string } };
  runs: { key: string; value: StoredRun };
  adapters: { key: string; value: StoredAdapter };
}

const DB = 'vco-lab';
let dbp: Promise<IDBPDatabase<VcoDb>> | undefined;

export function db(): Promise<IDBPDatabase<VcoDb>> {
  dbp ??= openDB<VcoDb>(DB, 2, {
    upgrade(d, from) {
      if (from < 1) {
        const files = d.createObjectStore('files', { keyPath: 'url' });
        files.createIndex('model', 'model');
      }
      if (from < 2) {
        d.createObjectStore('runs', { keyPath: 'id' });
        d.createObjectStore('adapters', { keyPath: 'id' });
      }
    },
  });
  return dbp;
}

export async function listStored(): Promise<StoredFile[]> {
  const all = await (await db()).getAll('files');
  return all
    .filter((f) => !f.absent)
    .map(({ blob: _b, ...f }) => f)
    .sort((a, b) => a.model.localeCompare(b.model) || a.name.localeCompare(b.name));
}

/** delete one file (by URL) or every file of a model */
export async function deleteStored(o: { url?: string; model?: string }): Promise<void> {
  const d = await db();
  if (o.url) await d.delete('files', o.url);
  if (o.model) {
    const tx = d.transaction('files', 'readwrite');
    for (const key of await tx.store.index('model').getAllKeys(o.model)) await tx.store.delete(key);
    await tx.done;
  }
}

export async function storageEstimate(): Promise<{ usage: number; quota: number; persisted: boolean }> {
  const s = (navigator as Navigator & { storage?: StorageManager }).storage;
  const e = s?.estimate ? await s.estimate() : {};
  const persisted = s?.persisted ? await s.persisted() : false;
  return { usage: e.usage ?? 0, quota: e.quota ?? 0, persisted };
}

/**
 * A fetch that answers from IndexedDB when the URL is stored there, and otherwise fetches and stores the body
 * once it has been read to its end. `model` groups the files in the listing.
 */
export function cachingFetch(
  model: string,
  o: { onStored?: (f: StoredFile) => void; onStoreFailed?: (url: string, why: string) => void } = {},
): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const name = decodeURIComponent(new URL(url, self.location.href).pathname.split('/').pop() ?? url);
    const hit = await (await db()).get('files', url);
    if (hit?.absent) return new Response(null, { status: 404, statusText: 'Not Found (remembered)' });
    if (hit)
      return new Response(hit.blob, { status: 200, headers: { 'content-length': String(hit.bytes), 'x-vco-lab-cache': 'hit' } });
    const res = await fetch(input, init);
    if (res.status === 404) {
      const absent = { url, model, name, bytes: 0, savedAt: Date.now(), absent: true, blob: new Blob([]) };
      await (await db()).put('files', absent).catch(() => undefined);
      return res;
    }
    if (!res.ok || !res.body) return res;
    const chunks: Uint8Array[] = [];
    const keep = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        chunks.push(chunk);
        ctl.enqueue(chunk);
      },
      async flush() {
        const blob = new Blob(chunks as BlobPart[]);
        const f: StoredFile = { url, model, name, bytes: blob.size, savedAt: Date.now() };
        try {
          await (await db()).put('files', { ...f, blob });
          o.onStored?.(f);
        } catch (e) {
          // the download stays usable for this load; the page says why it was not kept
          o.onStoreFailed?.(
            url,
            (e as Error).name === 'QuotaExceededError' ? 'the browser storage quota is full' : (e as Error).message,
          );
        }
      },
    });
    return new Response(res.body.pipeThrough(keep), { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
