/**
 * A PEFT adapter held against the model it is put on, before anything is uploaded. PEFT itself would refuse or
 * ignore what does not fit; silently ignoring it here would leave a policy equal to the reference with no
 * word said. So every LoRA tensor must adapt a linear module that the model has and that adapter_config.json
 * targets, with the model's shapes, the config's rank and finite values; targeted modules without tensors are
 * reported. Errors name the file, the tensor, what was expected and the likely fix.
 */
import { type Adapter, patterned, peftTargets } from './peft.js';
import { CheckpointError } from './safetensors.js';
import type { VlmSpec } from './types.js';
import { checkpointKeys, parameterList, prefixes } from './vlm.js';
import { checkFinite } from './weights.js';

export interface AdapterMatch {
  /** adapter module name (as the file writes it) -> the model's module name */
  modules: Map<string, string>;
  /** what a user should know but that changes no number: modules left as the base model has them */
  notes: string[];
}

const strip = (name: string) => name.replace(/\.weight$/, '');

export function matchAdapter(spec: VlmSpec, adapter: Adapter): AdapterMatch {
  const c = adapter.config,
    cfgFile = adapter.configFile;
  // the model's linear modules under every name a checkpoint may use for them (transformers 5 and legacy)
  const linears = new Map<string, { in: number; out: number }>();
  const alias = new Map<string, string>();
  for (const p of parameterList(spec, true)) {
    if (!p.linear || p.name === 'lm_head.weight') continue;
    const m = strip(p.name);
    linears.set(m, p.linear);
    for (const k of checkpointKeys(spec, p.name)) alias.set(strip(k), m);
  }
  const visionHead = `${prefixes(spec).vision}.head.`;
  const modules = new Map<string, string>();
  const notes: string[] = [];
  const skipped: string[] = [];
  for (const [name, l] of adapter.modules) {
    const tensor = (ab: 'A' | 'B') => l.keys?.[ab] ?? `${name}.lora_${ab}.weight`;
    if (!peftTargets(c, name))
      throw new CheckpointError(
        `${adapter.file}: tensor "${tensor('A')}" adapts ${name}, which ${cfgFile} does not target ` +
          `(target_modules ${JSON.stringify(c.target_modules)}${c.exclude_modules ? `, exclude_modules ${JSON.stringify(c.exclude_modules)}` : ''}` +
          `${c.layers_to_transform != null ? `, layers_to_transform ${JSON.stringify(c.layers_to_transform)}` : ''}); ` +
          'PEFT would not load it: fix the config or remove the tensor',
      );
    const model = alias.get(name);
    if (!model) {
      // SigLIP's pooling head exists in LLaVA checkpoints but never reaches the language model
      if (name.startsWith(visionHead) || /(^|\.)vision_tower\.head\./.test(name)) {
        skipped.push(name);
        continue;
      }
      // the model's module closest to the name (common prefix, then suffix; the last of equals, e.g. the top
      // layer), to show how its modules are named
      const shared = (a: string, b: string) => [...a].findIndex((ch, i) => ch !== b[i]) >>> 0;
      const rev = (x: string) => [...x].reverse().join('');
      const score = (m: string) => shared(m, name) * 1000 + shared(rev(m), rev(name));
      const example = [...linears.keys()].reduce((a, b) => (score(b) >= score(a) ? b : a));
      throw new CheckpointError(
        `${adapter.file}: tensor "${tensor('A')}" adapts ${name}, which this model does not have ` +
          `(${spec.text.layers} language-model layers; its modules are named like ${example}): ` +
          'the adapter was made for another model; load it on its base model',
      );
    }
    const lin = linears.get(model)!;
    const r = l.A.shape[0];
    const want = patterned(name, c.rank_pattern, c.r);
    if (l.A.shape.length !== 2 || l.A.shape[1] !== lin.in)
      throw new CheckpointError(
        `${adapter.file}: tensor "${tensor('A')}" has shape [${l.A.shape}], expected [${want}, ${lin.in}] for ${model} ` +
          `(${lin.in} inputs): the adapter was made for a model of another size`,
      );
    if (l.B.shape.length !== 2 || l.B.shape[0] !== lin.out)
      throw new CheckpointError(
        `${adapter.file}: tensor "${tensor('B')}" has shape [${l.B.shape}], expected [${lin.out}, ${r}] for ${model} ` +
          `(${lin.out} outputs): the adapter was made for a model of another size`,
      );
    if (r !== want)
      throw new CheckpointError(
        `${adapter.file}: tensor "${tensor('A')}" has rank ${r}, but ${cfgFile} says r = ${want}` +
          `${c.rank_pattern && Object.keys(c.rank_pattern).length ? ' (rank_pattern included)' : ''}; ` +
          'PEFT scales by lora_alpha / r, so the adapter would act at the wrong scale: fix r or rank_pattern',
      );
    checkFinite(adapter.file, tensor('A'), l.A.data as ArrayLike<number>);
    checkFinite(adapter.file, tensor('B'), l.B.data as ArrayLike<number>);
    if (modules.has(name)) continue;
    modules.set(name, model);
  }
  if (skipped.length)
    notes.push(
      `${adapter.file}: ${skipped.length} LoRA module(s) of the vision tower's pooling head (e.g. ${skipped[0]}) are not ` +
        'used: the language model never sees that head',
    );
  // targeted modules without tensors: PEFT would give them B = 0, i.e. the base model
  const covered = new Set(modules.values());
  const names = (m: string) => [...alias].filter(([, v]) => v === m).map(([k]) => k);
  const missing = [...linears.keys()].filter((m) => !covered.has(m) && names(m).some((n) => peftTargets(c, n)));
  if (missing.length)
    notes.push(
      `${adapter.file}: ${missing.length} module(s) that ${cfgFile} targets have no LoRA tensors (e.g. ${missing[0]}); ` +
        'they run as the base model, as PEFT would load them',
    );
  return { modules, notes };
}
