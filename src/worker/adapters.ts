/**
 * The page's adapter library in IndexedDB: PEFT adapters (adapter_config.json + adapter_model.safetensors)
 * kept with their base model, objective, steps and final metrics; renamed, deleted, exported as one zip
 * (fflate) that `vco-lab eval --adapter` and `vco-lab margins --adapter` read once unpacked, and imported from a
 * PEFT folder.
 */
import { strToU8, zipSync } from 'fflate';
import { adapterFromFiles } from '../model/peft.js';
import { type StoredAdapter, db } from './storage.js';

export type AdapterInfo = Omit<StoredAdapter, 'files'> & { bytes: number };

export async function listAdapters(): Promise<AdapterInfo[]> {
  const all = await (await db()).getAll('adapters');
  return all
    .map(({ files, ...a }) => ({ ...a, bytes: Object.values(files).reduce((n, b) => n + b.byteLength, 0) }))
    .sort((a, b) => b.createdAt - a.createdAt);
}

export async function getAdapter(id: string): Promise<StoredAdapter> {
  const a = await (await db()).get('adapters', id);
  if (!a) throw new Error(`no adapter "${id}" in this browser's library (deleted in another tab?)`);
  return a;
}

export async function renameAdapter(id: string, name: string): Promise<void> {
  if (!name.trim()) throw new Error('an adapter needs a name');
  const a = await getAdapter(id);
  await (await db()).put('adapters', { ...a, name: name.trim() });
}

export async function deleteAdapter(id: string): Promise<void> {
  await (await db()).delete('adapters', id);
}

/** one zip: a folder named after the adapter with the PEFT files and a README saying what made them */
export async function exportAdapterZip(id: string): Promise<{ name: string; zip: Uint8Array }> {
  const a = await getAdapter(id);
  const folder = a.name.replace(/[^\w.-]+/g, '_') || 'adapter';
  const readme =
    `# ${a.name}\n\nA PEFT LoRA adapter trained in VCO Lab's playground on ${a.baseModel} with ${a.objective} for ${a.steps} steps.\n\n` +
    `    npx vco-lab eval --model <the base model folder> --adapter ${folder}\n\nFinal metrics: ${JSON.stringify(a.metrics)}\n`;
  const entries: Record<string, Uint8Array> = { [`${folder}/README.md`]: strToU8(readme) };
  for (const [f, b] of Object.entries(a.files)) entries[`${folder}/${f}`] = b;
  return { name: `${folder}.zip`, zip: zipSync(entries, { level: 6 }) };
}

/** a PEFT folder (its files picked or dropped) into the library, checked as the loader checks it */
export async function importAdapter(files: Map<string, Uint8Array>, name: string, baseModel: string): Promise<AdapterInfo> {
  const adapter = adapterFromFiles(files, name);
  const a: StoredAdapter = {
    id: `import-${Date.now().toString(36)}`,
    name,
    baseModel,
    objective: 'imported',
    steps: 0,
    createdAt: Date.now(),
    metrics: {},
    files: {
      'adapter_config.json': files.get('adapter_config.json')!,
      'adapter_model.safetensors': files.get('adapter_model.safetensors')!,
    },
  };
  if (!adapter.modules.size) throw new Error(`${name}: the adapter holds no LoRA tensors`);
  await (await db()).put('adapters', a);
  const { files: f, ...info } = a;
  return { ...info, bytes: Object.values(f).reduce((n, b) => n + b.byteLength, 0) };
}
