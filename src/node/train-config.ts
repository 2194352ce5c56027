/**
 * `vco-lab train`'s configuration: one flat record with the names Hugging Face's TrainingArguments, TRL's
 * DPOConfig and PEFT's LoraConfig use (learning_rate, per_device_train_batch_size, lora_r, ...), read from a
 * JSON file (--config) and overridden by flags of the same names (--learning_rate or --learning-rate). The
 * official IC-VCO trainer's VCOConfig names are accepted too and become the objective's settings, so a
 * `train.sh` line carries over. Every field is checked (type, range, known names) before anything runs.
 */
import { readFileSync } from 'node:fs';
import { resolveObjective } from '../loss/registry.js';
import { EPS, UsageError } from './options.js';

export interface TrainRunConfig {
  /** a model folder the loaders read (config.json, safetensors, tokenizer, processor files) */
  model_name_or_path: string;
  /** a PEFT adapter folder to continue training, or null for a new adapter */
  adapter_name_or_path: string | null;
  /**
   * the preference data: "shapesworld" (generated on the fly), an IC-VCO JSONL file (image paths relative to
   * it), or a folder in the official layout (preference/train/metadata.parquet, images/)
   */
  dataset: string;
  /** ShapesWorld: pairs, seed, share of pairs about the planted prior, negatives */
  shapesworld_pairs: number;
  shapesworld_seed: number;
  shapesworld_prior_share: number;
  shapesworld_negative: 'edited' | 'synthetic';
  /** train on the valid rows of a dataset that has bad ones (they are listed) instead of refusing it */
  skip_bad_rows: boolean;
  /** share of the rows held out for evaluation (0: none) */
  validation_split: number;
  /** use only the first N rows (after the split) */
  max_samples: number | null;
  /** processed image tiles kept in host RAM (MiB); the rest are decoded again from the files' bytes when needed */
  image_cache_mb: number;
  /** a loss-module id and its settings (the objective's own names) */
  objective: string;
  objective_settings: Record<string, unknown>;
  lora_r: number;
  lora_alpha: number;
  /** written to adapter_config.json; preference training runs with dropout off, as TRL's disable_dropout */
  lora_dropout: number;
  /** PEFT target_modules: names (dotted suffixes: q_proj adapts the vision tower too) or one regex */
  lora_target_modules: string[] | string;
  /** LoRA on the top k language-model layers only (null: all) */
  lora_top_k: number | null;
  learning_rate: number;
  weight_decay: number;
  warmup_ratio: number;
  lr_scheduler_type: 'cosine' | 'linear' | 'constant';
  /** null: no clipping */
  max_grad_norm: number | null;
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  num_train_epochs: number;
  /** optimizer steps; null: num_train_epochs over the data */
  max_steps: number | null;
  seed: number;
  /** frozen base linears as int4 blocks */
  int4: boolean;
  ep: (typeof EPS)[number];
  /** "ort": VCO Lab's engine (onnxruntime); "torch": HF transformers + PEFT in PyTorch worker processes */
  backend: 'ort' | 'torch';
  /** torch: ranks on this node (torchrun; gloo on the CPU, nccl on GPUs); gradients are summed over ranks */
  nproc_per_node: number;
  /**
   * torch: nodes of the run; this one is node 0 and runs the loss; the others start the printed torchrun line
   * (rendezvous at master_addr)
   */
  nnodes: number;
  /** torch: this node's address as the other nodes reach it (also torchrun's master_addr) */
  master_addr: string;
  /**
   * torch: a DeepSpeed JSON config (HF TrainingArguments' --deepspeed): ZeRO stage 1 or 2 partitions the AdamW
   * state and the reduced gradients over the ranks, as the paper's runs; "auto" values come from this run
   */
  deepspeed: string | null;
  /** torch: the model's dtype and device */
  torch_dtype: 'float32' | 'bfloat16' | 'float64';
  torch_device: 'cpu' | 'cuda';
  output_dir: string;
  logging_steps: number;
  save_steps: number;
  /** evaluation every N steps (and at the end); 0: only at the end */
  eval_steps: number;
  /** the ShapesWorld benchmark at each evaluation: "auto" (when the model is a ShapesWorld model), true, false */
  benchmark: 'auto' | boolean;
  /** benchmark questions per category */
  benchmark_n: number;
}

export const TRAIN_DEFAULTS: TrainRunConfig = {
  model_name_or_path: 'models/shapesworld-tiny',
  adapter_name_or_path: null,
  dataset: 'shapesworld',
  shapesworld_pairs: 256,
  shapesworld_seed: 1,
  shapesworld_prior_share: 0.25,
  shapesworld_negative: 'edited',
  skip_bad_rows: false,
  validation_split: 0.1,
  max_samples: null,
  image_cache_mb: 1024,
  objective: 'icvco:paper',
  objective_settings: {},
  lora_r: 8,
  lora_alpha: 16,
  lora_dropout: 0,
  lora_target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  lora_top_k: null,
  learning_rate: 2e-3,
  weight_decay: 0,
  warmup_ratio: 0.1,
  lr_scheduler_type: 'cosine',
  max_grad_norm: 1,
  per_device_train_batch_size: 8,
  gradient_accumulation_steps: 1,
  num_train_epochs: 1,
  max_steps: null,
  seed: 42,
  int4: false,
  ep: 'cpu',
  backend: 'ort',
  nproc_per_node: 1,
  nnodes: 1,
  master_addr: '127.0.0.1',
  deepspeed: null,
  torch_dtype: 'float32',
  torch_device: 'cpu',
  output_dir: 'runs/vco-lab-run',
  logging_steps: 1,
  save_steps: 50,
  eval_steps: 50,
  benchmark: 'auto',
  benchmark_n: 50,
};

/**
 * The official IC-VCO VCOConfig's option names (vco_trainer.py) and the greek names of the paper, each mapped to
 * the loss module's setting for the reference-code and the paper preset.
 */
const OFFICIAL: Record<string, { code: string; paper?: string | string[] }> = {
  beta: { code: 'beta', paper: 'beta' },
  single_weight: { code: 'lambda_s', paper: 'lambda2' },
  lambda_s: { code: 'lambda_s', paper: 'lambda2' },
  multi_weight: { code: 'lambda_m', paper: 'lambda1' },
  lambda_m: { code: 'lambda_m', paper: 'lambda1' },
  anchor_weight: { code: 'eta', paper: ['eta1', 'eta2'] },
  eta: { code: 'eta', paper: ['eta1', 'eta2'] },
  single_anchor_weight: { code: 'lambda_sA' },
  multi_anchor_weight: { code: 'lambda_mA' },
  vcdist_weight: { code: 'gamma', paper: 'gamma' },
  gamma: { code: 'gamma', paper: 'gamma' },
  vcdist_threshold: { code: 'tau', paper: 'tau' },
  tau: { code: 'tau', paper: 'tau' },
  anchor_delta: { code: 'delta' },
  use_single_image: { code: 'singleBranch', paper: 'singleBranch' },
  use_multi_image: { code: 'multiBranch', paper: 'multiBranch' },
  use_single_branch_token_mask: { code: 'tokenMask', paper: 'tokenMask' },
  add_anchor_loss: { code: 'anchor', paper: 'anchor' },
  add_vcdist: { code: 'vcdist', paper: 'vcdist' },
  vcdist_filter: { code: 'dualGating', paper: 'dualGating' },
  vcdist_stopgrad: { code: 'stopGradient', paper: 'stopGradient' },
};
export const OFFICIAL_NAMES = Object.keys(OFFICIAL);

type Kind = 'string' | 'number' | 'int' | 'boolean' | 'object' | 'names';
const KINDS: Record<
  keyof TrainRunConfig,
  { kind: Kind; nullable?: boolean; min?: number; max?: number; minExclusive?: boolean; of?: readonly string[] }
> = {
  model_name_or_path: { kind: 'string' },
  adapter_name_or_path: { kind: 'string', nullable: true },
  dataset: { kind: 'string' },
  shapesworld_pairs: { kind: 'int', min: 1, max: 100_000 },
  shapesworld_seed: { kind: 'int', min: 0, max: 0x7fffffff },
  shapesworld_prior_share: { kind: 'number', min: 0, max: 1 },
  shapesworld_negative: { kind: 'string', of: ['edited', 'synthetic'] },
  skip_bad_rows: { kind: 'boolean' },
  validation_split: { kind: 'number', min: 0, max: 0.9 },
  max_samples: { kind: 'int', nullable: true, min: 1 },
  image_cache_mb: { kind: 'int', min: 16 },
  objective: { kind: 'string' },
  objective_settings: { kind: 'object' },
  lora_r: { kind: 'int', min: 1, max: 4096 },
  lora_alpha: { kind: 'number', min: 0, minExclusive: true },
  lora_dropout: { kind: 'number', min: 0, max: 0.99 },
  lora_target_modules: { kind: 'names' },
  lora_top_k: { kind: 'int', nullable: true, min: 1 },
  learning_rate: { kind: 'number', min: 0, minExclusive: true, max: 1 },
  weight_decay: { kind: 'number', min: 0, max: 10 },
  warmup_ratio: { kind: 'number', min: 0, max: 0.99 },
  lr_scheduler_type: { kind: 'string', of: ['cosine', 'linear', 'constant'] },
  max_grad_norm: { kind: 'number', nullable: true, min: 0, minExclusive: true },
  per_device_train_batch_size: { kind: 'int', min: 1, max: 4096 },
  gradient_accumulation_steps: { kind: 'int', min: 1, max: 4096 },
  num_train_epochs: { kind: 'number', min: 0, minExclusive: true, max: 10_000 },
  max_steps: { kind: 'int', nullable: true, min: 1 },
  seed: { kind: 'int', min: 0, max: 0x7fffffff },
  int4: { kind: 'boolean' },
  ep: { kind: 'string', of: EPS },
  backend: { kind: 'string', of: ['ort', 'torch'] },
  nproc_per_node: { kind: 'int', min: 1, max: 1024 },
  nnodes: { kind: 'int', min: 1, max: 4096 },
  master_addr: { kind: 'string' },
  deepspeed: { kind: 'string', nullable: true },
  torch_dtype: { kind: 'string', of: ['float32', 'bfloat16', 'float64'] },
  torch_device: { kind: 'string', of: ['cpu', 'cuda'] },
  output_dir: { kind: 'string' },
  logging_steps: { kind: 'int', min: 1 },
  save_steps: { kind: 'int', min: 1 },
  eval_steps: { kind: 'int', min: 0 },
  benchmark: { kind: 'string', of: ['auto', 'true', 'false'] },
  benchmark_n: { kind: 'int', min: 1 },
};

const FIELDS = Object.keys(TRAIN_DEFAULTS) as (keyof TrainRunConfig)[];

/** one field's value from JSON (a config file) or from a flag's text, checked */
function fieldValue(name: keyof TrainRunConfig, raw: unknown, where: string, fromText: boolean): unknown {
  const k = KINDS[name];
  const fail = (what: string): never => {
    throw new UsageError(`${where}: ${name} takes ${what}, got ${JSON.stringify(raw)}`);
  };
  if (raw === null || (fromText && (raw === 'null' || raw === 'none')))
    return k.nullable ? null : fail(k.kind === 'names' ? 'module names' : `a ${k.kind}`);
  if (name === 'benchmark') {
    const v = String(raw);
    if (!['auto', 'true', 'false'].includes(v)) fail('auto, true or false');
    return v === 'auto' ? 'auto' : v === 'true';
  }
  const range = () =>
    [k.min !== undefined ? `${k.minExclusive ? '>' : '≥'} ${k.min}` : '', k.max !== undefined ? `≤ ${k.max}` : '']
      .filter(Boolean)
      .join(' and ');
  switch (k.kind) {
    case 'string': {
      if (typeof raw !== 'string' || !raw) fail('a non-empty string');
      if (k.of && !k.of.includes(raw as string)) fail(`one of ${k.of.join(', ')}`);
      return raw;
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (fromText && (raw === 'true' || raw === 'false')) return raw === 'true';
      return fail('true or false');
    }
    case 'int':
    case 'number': {
      const n = typeof raw === 'number' ? raw : fromText && typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      const ok =
        Number.isFinite(n) &&
        (k.kind === 'number' || Number.isSafeInteger(n)) &&
        (k.min === undefined || (k.minExclusive ? n > k.min : n >= k.min)) &&
        (k.max === undefined || n <= k.max);
      if (!ok) fail(`${k.kind === 'int' ? 'an integer' : 'a number'}${range() ? ` ${range()}` : ''}`);
      return n;
    }
    case 'object': {
      let v = raw;
      if (fromText && typeof raw === 'string') {
        try {
          v = JSON.parse(raw);
        } catch {
          fail('a JSON object, e.g. \'{"beta": 0.2}\'');
        }
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('a JSON object');
      return v;
    }
    case 'names': {
      if (typeof raw === 'string' && fromText && !/[\\^$*+?()[\]{}|]/.test(raw)) return raw.split(',').map((s) => s.trim());
      if (typeof raw === 'string' && raw) return raw;
      if (Array.isArray(raw) && raw.length && raw.every((x) => typeof x === 'string' && x)) return raw;
      return fail('a list of module names or one regex');
    }
  }
}

function jsonOrText(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/**
 * The run's config: the defaults, then the file's fields, then the flags (`--name value`, `--name=value`, a
 * bare `--flag` for true; dashes or underscores). Official VCOConfig names go into objective_settings.
 */
export function resolveTrainConfig(o: {
  file?: string;
  json?: Record<string, unknown>;
  flags?: Record<string, string>;
}): TrainRunConfig {
  const c: TrainRunConfig = structuredClone(TRAIN_DEFAULTS);
  const official: Record<string, unknown> = {};
  const apply = (entries: [string, unknown][], where: string, fromText: boolean) => {
    for (const [key, v] of entries) {
      const name = key.replace(/-/g, '_');
      if (OFFICIAL[name]) {
        // a flag's text is read as JSON where it is JSON (numbers, true/false), else kept as text
        official[name] = fromText ? jsonOrText(String(v)) : v;
        continue;
      }
      if (!(name in TRAIN_DEFAULTS))
        throw new UsageError(
          `${where}: unknown field "${key}"; the fields are ${FIELDS.join(', ')}, and the official VCOConfig names ${OFFICIAL_NAMES.join(', ')} (vco-lab train --print-config shows the defaults)`,
        );
      (c as unknown as Record<string, unknown>)[name] = fieldValue(name as keyof TrainRunConfig, v, where, fromText);
    }
  };
  if (o.file) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(o.file, 'utf8'));
    } catch (e) {
      throw new UsageError(`${o.file}: not a readable JSON file (${(e as Error).message})`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json))
      throw new UsageError(`${o.file}: expected a JSON object of fields`);
    apply(Object.entries(json), o.file, false);
  }
  if (o.json) apply(Object.entries(o.json), 'config', false);
  if (o.flags) apply(Object.entries(o.flags), 'command line', true);
  // the official names become the objective's settings, under the preset's own names
  const preset = c.objective.startsWith('icvco') ? (c.objective.endsWith('reference-code') ? 'code' : 'paper') : null;
  for (const [name, v] of Object.entries(official)) {
    if (!preset) {
      // beta is every objective's; the rest are IC-VCO's
      if (name !== 'beta') throw new UsageError(`${name} is an IC-VCO option; objective ${c.objective} has no such setting`);
      c.objective_settings.beta = v;
      continue;
    }
    const target = preset === 'code' ? OFFICIAL[name].code : OFFICIAL[name].paper;
    if (!target) throw new UsageError(`${name} exists only in the reference-code preset; use objective icvco:reference-code`);
    for (const t of Array.isArray(target) ? target : [target]) c.objective_settings[t] = v;
  }
  try {
    resolveObjective(c.objective, c.objective_settings);
  } catch (e) {
    throw new UsageError(`objective ${c.objective}: ${(e as Error).message}`);
  }
  return c;
}

/** flags as given on the command line, by field name (for resolveTrainConfig) */
export function parseTrainFlags(args: string[]): {
  flags: Record<string, string>;
  config?: string;
  resume?: string;
  printConfig: boolean;
} {
  const flags: Record<string, string> = {};
  let config: string | undefined, resume: string | undefined;
  let printConfig = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}": every option is --name value`);
    const eq = a.indexOf('=');
    const name = (eq > 0 ? a.slice(2, eq) : a.slice(2)).replace(/-/g, '_');
    const next = () => {
      if (eq > 0) return a.slice(eq + 1);
      const v = args[i + 1];
      if (v === undefined || v.startsWith('--')) return 'true';
      i++;
      return v;
    };
    if (name === 'print_config') printConfig = true;
    else if (name === 'config') config = next();
    else if (name === 'resume') resume = next();
    else flags[name] = next();
  }
  return { flags, config, resume, printConfig };
}
