/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
 * data_offsets: [begin, end]}, __metadata__?}, then the raw little-endian tensor bytes. Small enough to
 * read directly; every malformed file gets an error that names it.
 */

export type SafeDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface SafeEntry {
  dtype: SafeDType;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafeHeader {
  entries: Record<string, SafeEntry>;
  metadata: Record<string, string>;
  /** byte offset of the data section in the file */
  dataStart: number;
}

const BYTES: Record<SafeDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** parse the header from the first bytes of a file (at least 8 + header length of them) */
export function parseSafetensorsHeader(bytes: Uint8Array, file: string, fileSize?: number): SafeHeader {
  if (bytes.byteLength < 8) throw new CheckpointError(`${file}: truncated (${bytes.byteLength} bytes): not a safetensors file`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > 100_000_000) throw new CheckpointError(`${file}: header length ${n} is implausible: not a safetensors file`);
  if (bytes.byteLength < 8 + n)
    throw new CheckpointError(`${file}: truncated inside its header (${bytes.byteLength} of ${8 + n} bytes)`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new CheckpointError(
      `${file}: header is not valid JSON (${(e as Error).message}): not a safetensors file, or a damaged one`,
    );
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new CheckpointError(`${file}: header is not a JSON object of tensors: not a safetensors file`);
  const bad = (name: string, what: string): never => {
    throw new CheckpointError(`${file}: tensor "${name}" ${what}; the file is damaged: re-save or re-download it`);
  };
  const isIndex = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  const entries: Record<string, SafeEntry> = {};
  const spans: Array<[number, number, string]> = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') continue;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(name, 'is not an object {dtype, shape, data_offsets}');
    const e = v as Record<string, unknown>;
    if (typeof e.dtype !== 'string' || !(e.dtype in BYTES))
      bad(name, `has dtype ${JSON.stringify(e.dtype)}, not one of ${Object.keys(BYTES).join(', ')}`);
    if (!Array.isArray(e.shape) || !e.shape.every(isIndex))
      bad(name, `has shape ${JSON.stringify(e.shape)}, not a list of sizes`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isIndex) || offs[0] > offs[1])
      bad(name, `has data_offsets ${JSON.stringify(offs)}, not [begin, end] with 0 <= begin <= end`);
    const shape = e.shape as number[],
      [b0, b1] = offs as [number, number];
    const count = shape.reduce((a, b) => a * b, 1),
      need = count * BYTES[e.dtype as SafeDType];
    if (!Number.isSafeInteger(need) || b1 - b0 !== need) {
      throw new CheckpointError(
        `${file}: tensor "${name}" [${shape}] ${e.dtype as string} needs ${need} bytes, its offsets span ${b1 - b0}; ` +
          'the file is damaged: re-save or re-download it',
      );
    }
    spans.push([b0, b1, name]);
    entries[name] = { dtype: e.dtype as SafeDType, shape, data_offsets: [b0, b1] };
  }
  // the format's own rule (the Rust reader enforces it): tensors tile the data section without holes or overlaps
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let end = 0;
  for (const [b0, b1, name] of spans) {
    if (b0 !== end)
      bad(name, `starts at byte ${b0} of the data, where the tensors before it end at ${end} (a hole or an overlap)`);
    end = b1;
  }
  const dataStart = 8 + n;
  if (fileSize !== undefined && dataStart + end > fileSize) {
    throw new CheckpointError(`${file}: truncated: its header describes ${dataStart + end} bytes, the file has ${fileSize}`);
  }
  const meta = (json as Record<string, unknown>).__metadata__;
  if (meta !== undefined && (typeof meta !== 'object' || meta === null || Array.isArray(meta)))
    throw new CheckpointError(`${file}: header field "__metadata__" must be an object of strings; the file is damaged`);
  return { entries, metadata: (meta as Record<string, string>) ?? {}, dataStart };
}

/** decode one tensor's bytes to float32 (floats) or its integer type */
export function decodeTensor(
  e: SafeEntry,
  raw: Uint8Array,
): Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array {
  const aligned = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  const buf = aligned.buffer,
    off = aligned.byteOffset,
    count = e.shape.reduce((a, b) => a * b, 1);
  switch (e.dtype) {
    case 'F32':
      return new Float32Array(buf, off, count);
    case 'F64':
      return new Float64Array(buf, off, count);
    case 'I64':
      return new BigInt64Array(buf, off, count);
    case 'I32':
      return new Int32Array(buf, off, count);
    case 'U8':
    case 'BOOL':
    case 'I8':
      return new Uint8Array(buf, off, count);
    case 'I16':
      return Int32Array.from(new Int16Array(buf, off, count));
    case 'BF16': {
      const src = new Uint16Array(buf, off, count),
        out = new Float32Array(count),
        u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = src[i] << 16;
      return out;
    }
    case 'F16': {
      const src = new Uint16Array(buf, off, count),
        out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(src[i]);
      return out;
    }
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 0x1f,
    f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** float32 -> bfloat16 bits, rounding to nearest even as torch does */
export function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length),
    out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = u[i];
    out[i] = (v & 0x7f800000) === 0x7f800000 && v & 0x7fffff ? (v >>> 16) | 0x40 : (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
  }
  return out;
}

/**
 * write tensors as a safetensors file (float32/float64/int64, or float32 data stored as BF16), keys sorted as
 * the Python writer does
 */
export function writeSafetensors(
  tensors: Record<
    string,
    { dtype: 'F32' | 'F64' | 'I64' | 'BF16'; shape: number[]; data: Float32Array | Float64Array | BigInt64Array }
  >,
  metadata: Record<string, string> = { format: 'pt' },
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  const stored = new Map<string, ArrayBufferView>();
  for (const n of names) {
    const t = tensors[n];
    const data = t.dtype === 'BF16' ? toBf16(t.data as Float32Array) : t.data;
    stored.set(n, data);
    header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + data.byteLength] };
    off += data.byteLength;
  }
  let h = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (h.byteLength % 8)) % 8; // the format pads the header with spaces to 8 bytes
  if (pad) h = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat(pad));
  const out = new Uint8Array(8 + h.byteLength + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  let at = 8 + h.byteLength;
  for (const n of names) {
    const d = stored.get(n)!;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}
