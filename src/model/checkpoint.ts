/**
 * What model builders read: a checkpoint's config and its tensors by name, on the host. Loaders (a folder in
 * Node; URLs or dropped files in the browser; single or sharded safetensors) produce this interface.
 */
import { CheckpointError } from './safetensors.js';

export type HostData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface HostTensor {
  /** float tensors are float32 (or float64 where the file holds F64); F16/BF16 are widened on load */
  dtype: 'float32' | 'float64' | 'int64' | 'int32' | 'uint8';
  shape: number[];
  data: HostData;
}

export interface TensorSource {
  /** where the tensors come from (a folder, a URL), for error messages */
  readonly location: string;
  names(): string[];
  has(name: string): boolean;
  /** the tensor; throws CheckpointError naming the file and tensor when absent */
  get(name: string): HostTensor;
  /** which file holds a tensor (for errors) */
  fileOf(name: string): string;
  /** the stored dtype and shape without decoding the tensor (sources that can tell) */
  info?(name: string): { dtype: string; shape: number[] } | undefined;
}

export interface Checkpoint {
  /** config.json as parsed */
  config: Record<string, unknown>;
  tensors: TensorSource;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/**
 * The tensor `name` with exactly `shape`, else a CheckpointError that names the file, the tensor and the
 * expected shape. Builders call this for every weight they read.
 */
export function expectTensor(source: TensorSource, name: string, shape: readonly number[]): HostTensor {
  checkTensorShape(source, name, shape);
  return source.get(name);
}

/** like expectTensor, but only checks presence and shape (without decoding where the source can tell) */
export function checkTensorShape(source: TensorSource, name: string, shape: readonly number[]): void {
  if (!source.has(name)) {
    throw new CheckpointError(
      `${source.location}: tensor "${name}" (expected shape ${fmt(shape)}) is missing from the checkpoint`,
    );
  }
  const got = source.info?.(name)?.shape ?? source.get(name).shape;
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new CheckpointError(`${source.fileOf(name)}: tensor "${name}" has shape ${fmt(got)}, expected ${fmt(shape)}`);
  }
}

/** check many tensors at once; the error lists every problem (one per line) */
export function checkTensors(source: TensorSource, expected: Iterable<{ name: string; shape: readonly number[] }>): void {
  const problems: string[] = [];
  for (const { name, shape } of expected) {
    try {
      checkTensorShape(source, name, shape);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      problems.push(e.message);
    }
  }
  if (problems.length)
    throw new CheckpointError(
      problems.length === 1 ? problems[0] : `${problems.length} tensors do not match:\n${problems.join('\n')}`,
    );
}

/** a checkpoint of float32 tensors held in memory (weights being trained, a model built in code) */
export function memoryCheckpoint(
  config: Record<string, unknown>,
  tensors: ReadonlyMap<string, { shape: number[]; data: Float32Array }>,
  location = 'weights in memory',
): Checkpoint {
  const get = (name: string): HostTensor => {
    const t = tensors.get(name);
    if (!t) throw new CheckpointError(`${location}: tensor "${name}" is missing`);
    return { dtype: 'float32', shape: t.shape, data: t.data };
  };
  return {
    config,
    tensors: {
      location,
      names: () => [...tensors.keys()],
      has: (n) => tensors.has(n),
      get,
      fileOf: () => location,
      info: (n) => (tensors.has(n) ? { dtype: 'F32', shape: tensors.get(n)!.shape } : undefined),
    },
  };
}
