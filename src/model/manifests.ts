/**
 * Model manifests (models/*.json): which Hub repo and revision, the files a VLM needs with their sizes where
 * known, and the key config values (a summary for people and for checking a download against). Hub URLs are
 * `https://huggingface.co/${repo}/resolve/${revision}/${file}`; `webLoadOptions` gives load-web.ts the URL of
 * each file and the sizes for its progress total.
 */
import llavaInterleave05 from '../../models/llava-interleave-qwen-0.5b.json';
import smolvlm256 from '../../models/smolvlm-256m-instruct.json';
import smolvlm500 from '../../models/smolvlm-500m-instruct.json';
import type { WebLoadOptions } from './load-web.js';

export interface ManifestFile {
  name: string;
  /** the model cannot load without it (optional ones are read when the repo has them) */
  required: boolean;
  /** size in bytes, when known */
  bytes: number | null;
  size: 'exact' | 'approx' | 'unknown';
}

export interface ModelManifest {
  id: string;
  repo: string;
  /** a branch or a commit */
  revision: string;
  family: 'idefics3' | 'llava';
  /** config.json model_type */
  modelType: string;
  files: ManifestFile[];
  /** key config values, as a summary (the loader reads and checks the real config.json) */
  config: Record<string, unknown>;
  notes?: string[];
}

export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestError';
  }
}

/** check a manifest's shape; errors name the manifest and the field */
export function parseManifest(json: unknown, file = 'manifest'): ModelManifest {
  const fail = (what: string): never => {
    throw new ManifestError(`${file}: ${what}`);
  };
  if (!json || typeof json !== 'object') fail('expected a JSON object');
  const m = json as Record<string, unknown>;
  for (const k of ['id', 'repo', 'revision', 'family', 'modelType'] as const)
    if (typeof m[k] !== 'string' || !m[k]) fail(`field "${k}" must be a non-empty string`);
  if (!/^[\w.-]+\/[\w.-]+$/.test(m.repo as string)) fail(`field "repo" (${String(m.repo)}) is not owner/name`);
  if (m.family !== 'idefics3' && m.family !== 'llava') fail(`field "family" (${String(m.family)}) must be idefics3 or llava`);
  if (!Array.isArray(m.files) || !m.files.length) fail('field "files" must be a non-empty list');
  (m.files as unknown[]).forEach((f, i) => {
    const x = f as Record<string, unknown>;
    if (typeof x?.name !== 'string' || !x.name) fail(`files[${i}].name must be a string`);
    if (typeof x.required !== 'boolean') fail(`files[${i}].required must be true or false`);
    if (!(x.bytes === null || (typeof x.bytes === 'number' && x.bytes > 0)))
      fail(`files[${i}].bytes must be a positive number or null`);
    if (!['exact', 'approx', 'unknown'].includes(x.size as string)) fail(`files[${i}].size must be exact, approx or unknown`);
    if ((x.bytes === null) !== (x.size === 'unknown')) fail(`files[${i}]: bytes is null exactly when size is "unknown"`);
  });
  const names = (m.files as ManifestFile[]).map((f) => f.name);
  if (!names.includes('config.json')) fail('files must list config.json');
  if (!names.includes('model.safetensors') && !names.includes('model.safetensors.index.json'))
    fail('files must list the weights');
  if (!m.config || typeof m.config !== 'object') fail('field "config" must be an object');
  return m as unknown as ModelManifest;
}

/** the manifests shipped in models/ */
export const MANIFESTS: readonly ModelManifest[] = [
  parseManifest(smolvlm256, 'models/smolvlm-256m-instruct.json'),
  parseManifest(smolvlm500, 'models/smolvlm-500m-instruct.json'),
  parseManifest(llavaInterleave05, 'models/llava-interleave-qwen-0.5b.json'),
];

export function manifestById(id: string): ModelManifest {
  const m = MANIFESTS.find((x) => x.id === id || x.repo === id);
  if (!m) throw new ManifestError(`no manifest "${id}"; known: ${MANIFESTS.map((x) => x.id).join(', ')}`);
  return m;
}

export const HUB = 'https://huggingface.co';

/** `https://huggingface.co/${repo}/resolve/${revision}` */
export function hubBaseUrl(m: Pick<ModelManifest, 'repo' | 'revision'>, hub = HUB): string {
  return `${hub}/${m.repo}/resolve/${encodeURIComponent(m.revision)}`;
}

/** `https://huggingface.co/${repo}/resolve/${revision}/${file}` */
export function hubFileUrl(m: Pick<ModelManifest, 'repo' | 'revision'>, file: string, hub = HUB): string {
  return `${hubBaseUrl(m, hub)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

/** total download size of the files with known sizes, and whether any size is unknown or approximate */
export function manifestSize(m: ModelManifest): { bytes: number; approximate: boolean } {
  let bytes = 0,
    approximate = false;
  for (const f of m.files) {
    if (f.bytes !== null) bytes += f.bytes;
    if (f.size !== 'exact') approximate = true;
  }
  return { bytes, approximate };
}

/** options for loadCheckpointFromUrl(hubBaseUrl(m), ...): Hub URLs, the manifest's extra files and sizes */
export function webLoadOptions(
  m: ModelManifest,
  opts: Omit<WebLoadOptions, 'urlOf' | 'sizes' | 'extraFiles'> & { hub?: string } = {},
): WebLoadOptions {
  const { hub, ...rest } = opts;
  const sizes: Record<string, number> = {};
  for (const f of m.files) if (f.bytes !== null) sizes[f.name] = f.bytes;
  return {
    ...rest,
    urlOf: (name) => hubFileUrl(m, name, hub),
    sizes,
    extraFiles: m.files.map((f) => f.name).filter((n) => n !== 'config.json' && !n.startsWith('model.safetensors')),
  };
}
