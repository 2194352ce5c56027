/** Turning wire tensors (api.ts) into the typed arrays onnxruntime takes; shared by the worker and tests. */
import type { WireArray, WireTensorIn } from './api.js';

type ArrayCtor = { new (n: number): WireArray; from(xs: ArrayLike<number>): WireArray; BYTES_PER_ELEMENT: number };

const CTORS: Record<string, ArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  int64: BigInt64Array as unknown as ArrayCtor,
};

/** the typed array class that holds a tensor of `type` (float16 as raw bits, bool as bytes) */
export function wireArrayClass(type: string): ArrayCtor {
  const C = CTORS[type];
  if (!C) throw new Error(`tensor type ${type} is not supported by the engine`);
  return C;
}

/** the typed array ORT wants for `type`, without a copy when `data` already is one */
export function toWireArray(type: string, data: WireTensorIn['data']): WireArray {
  const C = wireArrayClass(type);
  if (data instanceof C) return data;
  if (type === 'int64') return BigInt64Array.from(Array.from(data as ArrayLike<number | bigint>, (v) => BigInt(v)));
  return C.from(Array.from(data as ArrayLike<number | bigint>, Number));
}

/** view little-endian bytes as the typed array of `type` (copies when the bytes are misaligned) */
export function fromBytes(type: string, bytes: Uint8Array): WireArray {
  const C = wireArrayClass(type);
  const aligned = bytes.byteOffset % C.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
  return new (C as unknown as new (b: ArrayBufferLike, o: number, n: number) => WireArray)(
    aligned.buffer,
    aligned.byteOffset,
    aligned.byteLength / C.BYTES_PER_ELEMENT,
  );
}
