/**
 * `--deepspeed FILE` (HF TrainingArguments' name): a DeepSpeed config for the PyTorch ranks, resolved the way the
 * HF Trainer resolves one ("auto" filled from the run's own settings, explicit values that disagree refused),
 * so a config written for the official trainer (ZeRO-2, bf16 "auto") works as it is.
 *
 * What DeepSpeed does here: ZeRO stage 1 or 2 partitions the AdamW moments, the fp32 master weights and the
 * reduced gradients of the LoRA parameters over the ranks, reduces the gradients (bucketed), clips them and
 * steps. The ranks still score different rows of the micro-batch with plain autograd (the loss lives in Node):
 * their local LoRA gradients are handed to the engine at the step as one backward of Σ p·g, whose gradient is g.
 * Stage 3 would also shard the frozen weights, so every forward would gather them from every rank in lockstep;
 * ranks that score different rows cannot, so it is refused.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../options.js';

export interface DeepSpeedRun {
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  max_grad_norm: number | null;
  torch_dtype: 'float32' | 'bfloat16' | 'float64';
  /** ranks over all nodes */
  world: number;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** drop every remaining "auto" (DeepSpeed's own default applies), depth first */
function dropAuto(o: Json, path: string, dropped: string[]) {
  for (const [k, v] of Object.entries(o)) {
    if (v === 'auto') {
      delete o[k];
      dropped.push(`${path}${k}`);
    } else if (isObj(v)) dropAuto(v, `${path}${k}.`, dropped);
  }
}

/** the config the ranks give deepspeed.initialize, and notes for the log */
export function resolveDeepSpeedConfig(file: string, run: DeepSpeedRun): { config: Json; notes: string[] } {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${file}: ${field}: ${what}`);
  };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(
      `--deepspeed ${file}: cannot read it (${(e as Error).message}); give the path of a DeepSpeed JSON config`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not JSON (${(e as Error).message}); a DeepSpeed config is one JSON object`);
  }
  if (!isObj(raw))
    throw new UsageError(`${file}: a DeepSpeed config is one JSON object, got ${Array.isArray(raw) ? 'an array' : typeof raw}`);
  const c = structuredClone(raw);
  const notes: string[] = [];

  for (const section of ['optimizer', 'scheduler'])
    if (section in c)
      fail(
        section,
        `remove it: vco-lab train's AdamW and schedule drive the run (--learning_rate, --weight_decay, --lr_scheduler_type, --warmup_ratio), as its other backend`,
      );
  const zero = c.zero_optimization === undefined ? {} : c.zero_optimization;
  if (!isObj(zero)) fail('zero_optimization', 'must be an object such as {"stage": 2}');
  const z = zero as Json;
  const stage = z.stage === undefined ? 0 : z.stage;
  if (stage === 3)
    fail(
      'zero_optimization.stage',
      '3 shards the frozen weights too, so every forward gathers them from all ranks in lockstep, which ranks scoring ' +
        "different rows cannot do; use 2 (the paper's) or 1",
    );
  if (stage !== 0 && stage !== 1 && stage !== 2) fail('zero_optimization.stage', `takes 0, 1 or 2, got ${JSON.stringify(stage)}`);

  // the batch: the run's numbers, checked where the file gives its own (as the HF Trainer does)
  const batch: Array<[string, number]> = [
    ['train_micro_batch_size_per_gpu', run.per_device_train_batch_size],
    ['gradient_accumulation_steps', run.gradient_accumulation_steps],
    ['train_batch_size', run.per_device_train_batch_size * run.gradient_accumulation_steps * run.world],
  ];
  for (const [k, mine] of batch)
    if (c[k] !== undefined && c[k] !== 'auto' && c[k] !== mine)
      fail(k, `${JSON.stringify(c[k])} disagrees with the run's ${mine}; write "auto" or ${mine}`);
  const clip = run.max_grad_norm ?? 0;
  if (c.gradient_clipping !== undefined && c.gradient_clipping !== 'auto' && c.gradient_clipping !== clip)
    fail(
      'gradient_clipping',
      `${JSON.stringify(c.gradient_clipping)} disagrees with --max_grad_norm ${run.max_grad_norm}; write "auto" or make them equal`,
    );
  const precision: Array<[string, boolean]> = [
    ['bf16', run.torch_dtype === 'bfloat16'],
    ['fp16', false],
  ];
  for (const [k, mine] of precision) {
    const sec = c[k];
    if (sec === undefined) continue;
    if (!isObj(sec)) fail(k, 'must be an object such as {"enabled": "auto"}');
    const en = (sec as Json).enabled;
    if (en === 'auto') (sec as Json).enabled = mine;
    else if (en === true && !mine)
      fail(
        `${k}.enabled`,
        k === 'fp16'
          ? 'fp16 is not a torch_dtype of vco-lab train; use bf16 (--torch_dtype bfloat16) or "auto"'
          : `true, but --torch_dtype is ${run.torch_dtype}; pass --torch_dtype bfloat16 or write "auto"`,
      );
  }
  if (run.torch_dtype === 'bfloat16' && !(isObj(c.bf16) && c.bf16.enabled === true)) {
    c.bf16 = { ...(isObj(c.bf16) ? c.bf16 : {}), enabled: true };
    notes.push('bf16.enabled set: the model is bfloat16 (fp32 master weights in the optimizer partitions)');
  }

  // what DeepSpeed is given: one backward and one step per optimizer step (the Trainer accumulates)
  c.train_micro_batch_size_per_gpu = 1;
  c.gradient_accumulation_steps = 1;
  c.train_batch_size = run.world;
  c.gradient_clipping = clip;
  // the AdamW is torch's (the run's settings), given to deepspeed.initialize
  c.zero_allow_untested_optimizer = true;
  if (c.steps_per_print === undefined) c.steps_per_print = 1e9;
  const dropped: string[] = [];
  dropAuto(c, '', dropped);
  if (dropped.length) notes.push(`DeepSpeed's defaults for ${dropped.join(', ')} ("auto")`);
  notes.unshift(`DeepSpeed ZeRO stage ${stage} from ${file}`);
  return { config: c, notes };
}
