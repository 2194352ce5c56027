/**
 * PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors. Keys look like
 * `base_model.model.<module>.lora_A.weight` (A [r, in]) and `...lora_B.weight` (B [out, r]); PEFT applies
 * y += (α/r)·B A x (α/√r with use_rslora). target_modules is a regex (full match on the module name) or a
 * list of names matched as the name itself or a dotted suffix anywhere: so `q_proj` also adapts a vision
 * tower's q_proj.
 */
import type { HostTensor, TensorSource } from './checkpoint.js';
import { SafetensorsSource, parseJsonFile } from './files.js';
import { CheckpointError } from './safetensors.js';

export interface LoraConfig {
  r: number;
  lora_alpha: number;
  target_modules: string | string[];
  use_rslora?: boolean;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
  use_dora?: boolean;
  bias?: string;
  /** PEFT: modules never adapted, even where target_modules names them (regex or names) */
  exclude_modules?: string | string[] | null;
  /** PEFT: only these layer indices are adapted */
  layers_to_transform?: number | number[] | null;
}

export interface LoraModule {
  /** the module name as PEFT sees it, e.g. model.text_model.layers.0.self_attn.q_proj */
  module: string;
  r: number;
  scale: number;
  A: HostTensor;
  B: HostTensor;
  /** the tensors' keys in the file */
  keys?: { A: string; B: string };
}

export interface Adapter {
  config: LoraConfig;
  modules: Map<string, LoraModule>;
  /** the file the tensors came from, for error messages */
  file: string;
  /** adapter_config.json's path, for error messages */
  configFile: string;
}

export const PEFT_PREFIX = 'base_model.model.';

/** PEFT's matching of target_modules against a module name */
export function peftMatches(module: string, target: string | string[]): boolean {
  if (typeof target === 'string') return new RegExp(`^(?:${target})$`).test(module);
  return target.some((t) => module === t || module.endsWith(`.${t}`));
}

/** rank_pattern / alpha_pattern keys match as PEFT does: a regex on the end of the name after a dot */
export function patterned(module: string, pattern: Record<string, number> | undefined, fallback: number): number {
  for (const [k, v] of Object.entries(pattern ?? {})) if (new RegExp(`(^|\\.)${k}$`).test(module)) return v;
  return fallback;
}

export function loraScale(c: LoraConfig, module: string, r: number): number {
  const alpha = patterned(module, c.alpha_pattern, c.lora_alpha);
  return c.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
}

export function validateLoraConfig(raw: Record<string, unknown>, file: string): LoraConfig {
  const fail = (k: string, what: string): never => {
    throw new CheckpointError(`${file}: field "${k}" ${what}`);
  };
  const isNames = (v: unknown) => typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
  if (raw.r === undefined || raw.r === null) fail('r', 'is missing (the LoRA rank)');
  if (!Number.isInteger(raw.r) || (raw.r as number) < 1)
    fail('r', `is ${JSON.stringify(raw.r)}; the rank must be a positive integer`);
  if (raw.lora_alpha === undefined || raw.lora_alpha === null) fail('lora_alpha', 'is missing');
  if (typeof raw.lora_alpha !== 'number' || !Number.isFinite(raw.lora_alpha) || raw.lora_alpha <= 0)
    fail('lora_alpha', `is ${JSON.stringify(raw.lora_alpha)}; it must be a positive number (the scale is lora_alpha / r)`);
  if (raw.target_modules === undefined || raw.target_modules === null) fail('target_modules', 'is missing');
  if (!isNames(raw.target_modules))
    fail('target_modules', `is ${JSON.stringify(raw.target_modules)}; it must be a regex string or a list of module names`);
  const regex = (k: string, pattern: string) => {
    try {
      new RegExp(pattern);
    } catch (e) {
      fail(k, `holds ${JSON.stringify(pattern)}, not a valid regular expression (${(e as Error).message})`);
    }
  };
  if (typeof raw.target_modules === 'string') regex('target_modules', raw.target_modules);
  if (raw.exclude_modules != null && !isNames(raw.exclude_modules))
    fail('exclude_modules', 'must be a regex string or a list of module names');
  if (typeof raw.exclude_modules === 'string') regex('exclude_modules', raw.exclude_modules);
  const ltt = raw.layers_to_transform;
  if (ltt != null && !(Number.isInteger(ltt) || (Array.isArray(ltt) && ltt.every(Number.isInteger))))
    fail('layers_to_transform', 'must be a layer index or a list of them');
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = raw[k];
    if (v == null) continue;
    if (typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'number' && x > 0))
      fail(k, 'must map module patterns to positive numbers');
    for (const key of Object.keys(v)) regex(k, key);
  }
  if (raw.peft_type !== undefined && raw.peft_type !== 'LORA')
    fail('peft_type', `is ${String(raw.peft_type)}; only LORA adapters are supported`);
  if (raw.use_dora) fail('use_dora', 'is true; DoRA adapters are not supported');
  if (raw.bias && raw.bias !== 'none') fail('bias', `is ${String(raw.bias)}; only "none" is supported`);
  return raw as unknown as LoraConfig;
}

/**
 * Does PEFT adapt this module: target_modules names it, exclude_modules does not, and its layer index (if
 * any) is in layers_to_transform.
 */
export function peftTargets(c: LoraConfig, module: string): boolean {
  if (!peftMatches(module, c.target_modules)) return false;
  if (c.exclude_modules != null && peftMatches(module, c.exclude_modules)) return false;
  if (c.layers_to_transform != null) {
    const layer = /\.layers\.(\d+)\./.exec(module);
    const want = Array.isArray(c.layers_to_transform) ? c.layers_to_transform : [c.layers_to_transform];
    if (!layer || !want.includes(Number(layer[1]))) return false;
  }
  return true;
}

/** read an adapter from its config and tensors; every module needs both A and B of matching rank */
export function readAdapter(configRaw: Record<string, unknown>, configFile: string, tensors: TensorSource): Adapter {
  const config = validateLoraConfig(configRaw, configFile);
  const modules = new Map<string, LoraModule>();
  for (const key of tensors.names()) {
    const m = /^(?:base_model\.model\.)?(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(key);
    if (!m) {
      throw new CheckpointError(
        `${tensors.fileOf(key)}: tensor "${key}" is not a LoRA A/B weight; only plain LoRA adapters load`,
      );
    }
    const module = m[1];
    if (!modules.has(module)) {
      const base = key.startsWith(PEFT_PREFIX) ? PEFT_PREFIX : '';
      const ka = `${base}${module}.lora_A.weight`,
        kb = `${base}${module}.lora_B.weight`;
      if (!tensors.has(ka) || !tensors.has(kb)) {
        throw new CheckpointError(
          `${tensors.location}: module ${module} has ${tensors.has(ka) ? 'lora_A' : 'lora_B'} but not ` +
            `${tensors.has(ka) ? 'lora_B' : 'lora_A'}`,
        );
      }
      const A = tensors.get(ka),
        B = tensors.get(kb);
      const r = A.shape[0];
      if (B.shape[1] !== r) {
        throw new CheckpointError(
          `${tensors.fileOf(kb)}: tensor "${kb}" has shape [${B.shape}], expected [${B.shape[0]}, ${r}] (rank of lora_A)`,
        );
      }
      modules.set(module, { module, r, scale: loraScale(config, module, r), A, B, keys: { A: ka, B: kb } });
    }
  }
  const first = tensors.names()[0];
  if (!modules.size) throw new CheckpointError(`${tensors.location}: the adapter holds no LoRA tensors`);
  return { config, modules, file: first ? tensors.fileOf(first) : tensors.location, configFile };
}

/**
 * An adapter from a PEFT folder's files held in memory (dropped, fetched, or out of a store): adapter_config.json
 * and adapter_model.safetensors. Errors name `location/<file>`.
 */
export function adapterFromFiles(files: ReadonlyMap<string, Uint8Array>, location: string): Adapter {
  const cfg = files.get('adapter_config.json');
  const weights = files.get('adapter_model.safetensors');
  if (!cfg)
    throw new CheckpointError(
      `${location}/adapter_config.json is missing: a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors`,
    );
  if (!weights)
    throw new CheckpointError(
      `${location}/adapter_model.safetensors is missing (a .bin adapter must be re-saved with safe_serialization=True)`,
    );
  const configFile = `${location}/adapter_config.json`;
  return readAdapter(
    parseJsonFile(cfg, configFile),
    configFile,
    new SafetensorsSource(location, [{ file: `${location}/adapter_model.safetensors`, bytes: weights }]),
  );
}
