/**
 * Loading a checkpoint's weights into a runtime's WeightStore once, validated against the family's parameter
 * list (the file, the tensor and the expected shape in every error), optionally as int4 blocks.
 */
import { quantizeInt4 } from '../onnx/quant.js';
import type { Runtime, WeightStore } from '../runtime/runtime.js';
import type { Checkpoint, HostTensor } from './checkpoint.js';
import { CheckpointError } from './safetensors.js';
import { type VlmSpec, checkpointKeys, parameterList } from './vlm.js';

export function toFloat32(t: HostTensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
}

/** the index of the first NaN or infinity, or -1 */
export function firstNonFinite(x: ArrayLike<number>): number {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return -1;
}

/** a tensor's values must be finite: a NaN weight would turn every score it touches into NaN without a word */
export function checkFinite(file: string, name: string, x: ArrayLike<number>): void {
  const i = firstNonFinite(x);
  if (i < 0) return;
  let n = 0;
  for (let j = i; j < x.length; j++) if (!Number.isFinite(x[j])) n++;
  throw new CheckpointError(
    `${file}: tensor "${name}" holds ${n} non-finite value${n > 1 ? 's' : ''} (the first, ${x[i]}, at index ${i}); ` +
      'the file is damaged or was saved after training diverged: use another copy or checkpoint',
  );
}

/** int4 block size for a linear with K inputs: 32, or 16 where K is not a multiple of 32; 0 = keep float */
export function int4Block(K: number): number {
  return K % 32 === 0 ? 32 : K % 16 === 0 ? 16 : 0;
}

export interface UploadResult {
  /** linears stored as int4 blocks */
  int4: Set<string>;
  /** bytes uploaded */
  bytes: number;
}

/**
 * Where each parameter the graphs read is stored in a checkpoint, checked before anything is uploaded: every
 * tensor present (under its name or a legacy one) with the expected shape, else an error naming the file, the
 * tensor and the expected shape. Sources that can tell shapes without decoding (safetensors) decode nothing.
 */
export function checkWeights(spec: VlmSpec, ckpt: Checkpoint): Map<string, string> {
  const found = new Map<string, string>();
  for (const p of parameterList(spec)) {
    const keys = checkpointKeys(spec, p.name);
    const key = keys.find((k) => ckpt.tensors.has(k));
    if (!key) throw new CheckpointError(`${ckpt.tensors.location}: tensor "${keys[0]}" is missing (expected shape [${p.shape}])`);
    const shape = ckpt.tensors.info?.(key)?.shape ?? ckpt.tensors.get(key).shape;
    if (shape.length !== p.shape.length || shape.some((d, j) => d !== p.shape[j])) {
      throw new CheckpointError(`${ckpt.tensors.fileOf(key)}: tensor "${key}" has shape [${shape}], expected [${p.shape}]`);
    }
    found.set(p.name, key);
  }
  return found;
}

export async function uploadWeights(
  rt: Runtime,
  store: WeightStore,
  spec: VlmSpec,
  ckpt: Checkpoint,
  o: { int4?: boolean; onProgress?: (done: number, total: number) => void } = {},
): Promise<UploadResult> {
  const int4 = new Set<string>();
  let bytes = 0;
  const params = parameterList(spec);
  const keys = checkWeights(spec, ckpt);
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    const key = keys.get(p.name)!;
    const data = toFloat32(ckpt.tensors.get(key));
    checkFinite(ckpt.tensors.fileOf(key), key, data);
    const module = p.name.slice(0, -'.weight'.length);
    const bs = p.linear ? int4Block(p.linear.in) : 0;
    if (o.int4 && p.linear && p.name !== 'lm_head.weight' && bs) {
      const q = quantizeInt4(data, p.linear.out, p.linear.in, { blockSize: bs });
      const nb = p.linear.in / bs;
      await store.set(`${module}.qweight`, rt.tensor('uint8', q.packed, [p.linear.out, nb, bs / 2]));
      await store.set(`${module}.scales`, rt.tensor('float32', q.scales, [p.linear.out * nb]));
      await store.set(`${module}.qzeros`, rt.tensor('uint8', q.zeroPoints!, [p.linear.out, Math.ceil(nb / 2)]));
      int4.add(module);
      bytes += q.packed.byteLength + q.scales.byteLength + q.zeroPoints!.byteLength;
    } else {
      await store.set(p.name, rt.tensor('float32', data, p.shape));
      bytes += data.byteLength;
    }
    o.onProgress?.(i + 1, params.length);
  }
  return { int4, bytes };
}
