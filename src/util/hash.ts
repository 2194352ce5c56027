/**
 * A fast 53-bit content hash (cyrb53) for caches keyed by what went in: image features by pixel content,
 * lower-stack outputs by context, compiled sessions by model spec. Not cryptographic.
 */
export function contentHash(...parts: Array<ArrayLike<number> | ArrayBufferView | string>): string {
  let h1 = 0xdeadbeef,
    h2 = 0x41c6ce57;
  const enc = new TextEncoder();
  for (const part of parts) {
    const bytes =
      typeof part === 'string'
        ? enc.encode(part)
        : ArrayBuffer.isView(part)
          ? new Uint8Array(part.buffer, part.byteOffset, part.byteLength)
          : new Uint8Array(Float64Array.from(part as ArrayLike<number>).buffer);
    for (let i = 0; i < bytes.length; i++) {
      h1 = Math.imul(h1 ^ bytes[i], 2654435761);
      h2 = Math.imul(h2 ^ bytes[i], 1597334677);
    }
    h1 = Math.imul(h1 ^ 0x9e3779b9, 2246822507);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}
