/**
 * Adapters in PEFT's format and training checkpoints, as bytes (the Node side writes them atomically to a
 * folder, the browser to IndexedDB). A checkpoint is a folder like HF Trainer's checkpoint-N:
 *   adapter_config.json, adapter_model.safetensors   the PEFT adapter (loads in PEFT as is)
 *   optimizer.safetensors                             AdamW moments, float64 (exp_avg.<name>, exp_avg_sq.<name>)
 *   trainer_state.json                                step, epoch, data order and position, RNG, config
 */
import { type LoraConfig, peftMatches } from '../model/peft.js';
import { CheckpointError, parseSafetensorsHeader, writeSafetensors, decodeTensor } from '../model/safetensors.js';
import { linearModules } from '../model/vlm.js';
import type { Engine } from './engine.js';
import type { TrainConfig, TrainState } from './trainer.js';

export type FileBytes = Record<string, Uint8Array>;

const json = (x: unknown) => new TextEncoder().encode(`${JSON.stringify(x, null, 2)}\n`);

/** PEFT adapter_config.json + adapter_model.safetensors for the engine's LoRA */
export function exportPeft(e: Engine, o: { baseModel?: string; targets?: string | string[]; dropout?: number } = {}): FileBytes {
  const mods = [...e.lora.values()];
  if (!mods.length) throw new Error('the engine has no LoRA to export');
  const names = new Set(mods.map((m) => m.module));
  // the original targets when they select exactly these modules; else a regex that names each one
  const all = linearModules(e.spec);
  const exact = (t: string | string[]) =>
    all.filter((m) => peftMatches(m, t)).length === names.size && all.every((m) => !peftMatches(m, t) || names.has(m));
  const target_modules = o.targets && exact(o.targets) ? o.targets : [...names].map((n) => n.replace(/\./g, '\\.')).join('|');
  const r = mods[0].r;
  const config: LoraConfig & Record<string, unknown> = {
    peft_type: 'LORA',
    task_type: null,
    base_model_name_or_path: o.baseModel ?? null,
    r,
    lora_alpha: mods[0].scale * r,
    target_modules,
    // what the adapter was configured with (preference training runs with dropout off, as TRL's disable_dropout)
    lora_dropout: o.dropout ?? 0,
    bias: 'none',
    use_rslora: false,
    use_dora: false,
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    rank_pattern: Object.fromEntries(mods.filter((m) => m.r !== r).map((m) => [m.module, m.r])),
    alpha_pattern: Object.fromEntries(
      mods.filter((m) => m.scale * m.r !== mods[0].scale * r).map((m) => [m.module, m.scale * m.r]),
    ),
    revision: null,
  };
  const tensors: Parameters<typeof writeSafetensors>[0] = {};
  for (const m of mods) {
    tensors[`base_model.model.${m.module}.lora_A.weight`] = { dtype: 'F32', shape: [m.r, m.inFeatures], data: m.A };
    tensors[`base_model.model.${m.module}.lora_B.weight`] = { dtype: 'F32', shape: [m.outFeatures, m.r], data: m.B };
  }
  return { 'adapter_config.json': json(config), 'adapter_model.safetensors': writeSafetensors(tensors) };
}

export interface TrainerStateFile {
  format: 'vco-lab-trainer-state/1';
  step: number;
  epoch: number;
  position: number;
  order: number[];
  rng: number;
  adam_step: number;
  sample_ids: string[];
  config: TrainConfig;
}

/** the trainer's own state (data order, RNG, step) as trainer_state.json: what every backend's checkpoint holds */
export function trainerStateFile(state: TrainState, config: TrainConfig, sampleIds: string[]): Uint8Array {
  const st: TrainerStateFile = {
    format: 'vco-lab-trainer-state/1',
    step: state.step,
    epoch: state.epoch,
    position: state.position,
    order: state.order,
    rng: state.rng,
    adam_step: state.adam.step,
    sample_ids: sampleIds,
    config,
  };
  return json(st);
}

/** trainer_state.json read back: the state without AdamW's moments (the backend restores those) */
export function readTrainerState(
  bytes: Uint8Array,
  where: string,
): { state: TrainState; config: TrainConfig; sampleIds: string[] } {
  const st = JSON.parse(new TextDecoder().decode(bytes)) as TrainerStateFile;
  if (st.format !== 'vco-lab-trainer-state/1')
    throw new CheckpointError(`${where}/trainer_state.json: field "format" is ${st.format}, expected vco-lab-trainer-state/1`);
  return {
    state: {
      step: st.step,
      epoch: st.epoch,
      position: st.position,
      order: st.order,
      rng: st.rng,
      adam: { step: st.adam_step, m: new Map(), v: new Map() },
    },
    config: st.config,
    sampleIds: st.sample_ids,
  };
}

export function checkpointFiles(e: Engine, state: TrainState, config: TrainConfig, sampleIds: string[]): FileBytes {
  const opt: Parameters<typeof writeSafetensors>[0] = {};
  for (const [k, m] of state.adam.m) opt[`exp_avg.${k}`] = { dtype: 'F64', shape: [m.length], data: m };
  for (const [k, v] of state.adam.v) opt[`exp_avg_sq.${k}`] = { dtype: 'F64', shape: [v.length], data: v };
  return {
    ...exportPeft(e),
    'optimizer.safetensors': writeSafetensors(opt),
    'trainer_state.json': trainerStateFile(state, config, sampleIds),
  };
}

/** restore the engine's LoRA and the trainer state from checkpoint files */
export async function restoreCheckpoint(
  e: Engine,
  files: FileBytes,
  where = 'checkpoint',
): Promise<{ state: TrainState; config: TrainConfig; sampleIds: string[] }> {
  const need = (f: string) => {
    const b = files[f];
    if (!b) throw new CheckpointError(`${where}: ${f} is missing`);
    return b;
  };
  const { state, config, sampleIds } = readTrainerState(need('trainer_state.json'), where);
  const read = (f: string) => {
    const b = need(f),
      h = parseSafetensorsHeader(b, `${where}/${f}`, b.byteLength);
    return (name: string) => {
      const ent = h.entries[name];
      if (!ent) throw new CheckpointError(`${where}/${f}: tensor "${name}" is missing`);
      return decodeTensor(ent, b.subarray(h.dataStart + ent.data_offsets[0], h.dataStart + ent.data_offsets[1]));
    };
  };
  const ad = read('adapter_model.safetensors');
  for (const p of e.lora.values()) {
    const A = ad(`base_model.model.${p.module}.lora_A.weight`),
      B = ad(`base_model.model.${p.module}.lora_B.weight`);
    if (A.length !== p.A.length || B.length !== p.B.length) {
      throw new CheckpointError(
        `${where}/adapter_model.safetensors: ${p.module} has another shape than the engine's LoRA ` +
          `([${p.r}, ${p.inFeatures}] / [${p.outFeatures}, ${p.r}])`,
      );
    }
    p.A.set(A as Float32Array);
    p.B.set(B as Float32Array);
  }
  await e.uploadLora();
  const opt = read('optimizer.safetensors');
  if (state.adam.step > 0) {
    for (const p of e.lora.values()) {
      for (const ab of ['A', 'B']) {
        const k = `${p.module}.lora_${ab}.weight`;
        state.adam.m.set(k, Float64Array.from(opt(`exp_avg.${k}`) as Float64Array));
        state.adam.v.set(k, Float64Array.from(opt(`exp_avg_sq.${k}`) as Float64Array));
      }
    }
  }
  return { state, config, sampleIds };
}
