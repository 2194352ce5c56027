/**
 * int4 block quantization of a float weight W [N, K] (HF Linear layout: out x in) into the layout of ORT's
 * com.microsoft MatMulNBits: B uint8 [N, K/block, block/2] (two 4-bit codes a byte, the lower index in the
 * low nibble), scales float [N·K/block], zero points uint8 [N, ceil(K/block / 2)] packed the same way
 * (absent: 8, the symmetric default). dequant(q) = (q - zp)·scale.
 */

export interface Int4Weight {
  N: number;
  K: number;
  blockSize: number;
  /** [N, nBlocks, blockSize/2] */
  packed: Uint8Array;
  /** [N · nBlocks] */
  scales: Float32Array;
  /** [N, ceil(nBlocks/2)], or null for symmetric quantization (zero point 8) */
  zeroPoints: Uint8Array | null;
}

export function quantizeInt4(
  w: ArrayLike<number>,
  N: number,
  K: number,
  opts: { blockSize?: number; symmetric?: boolean } = {},
): Int4Weight {
  const bs = opts.blockSize ?? 32;
  if (bs < 16 || (bs & (bs - 1)) !== 0) throw new Error(`int4 block size must be a power of two >= 16, got ${bs}`);
  if (K % bs !== 0) throw new Error(`int4 quantization: K = ${K} is not a multiple of the block size ${bs}`);
  if (w.length !== N * K) throw new Error(`int4 quantization: ${w.length} weights for [${N}, ${K}]`);
  const nb = K / bs,
    sym = opts.symmetric ?? false;
  const packed = new Uint8Array(N * nb * (bs / 2));
  const scales = new Float32Array(N * nb);
  const zpBytes = Math.ceil(nb / 2);
  const zeroPoints = sym ? null : new Uint8Array(N * zpBytes);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const off = n * K + b * bs;
      let lo = Infinity,
        hi = -Infinity,
        amax = 0;
      for (let i = 0; i < bs; i++) {
        const x = w[off + i];
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
        amax = Math.max(amax, Math.abs(x));
      }
      let scale: number, zp: number;
      if (sym) {
        scale = amax / 7;
        zp = 8;
      } else {
        lo = Math.min(lo, 0);
        hi = Math.max(hi, 0); // zero must be representable exactly
        scale = (hi - lo) / 15;
        zp = scale > 0 ? Math.min(15, Math.max(0, Math.round(-lo / scale))) : 8;
      }
      const s32 = Math.fround(scale);
      scales[n * nb + b] = s32;
      if (zeroPoints) zeroPoints[n * zpBytes + (b >> 1)] |= zp << ((b & 1) * 4);
      for (let i = 0; i < bs; i++) {
        const q = s32 > 0 ? Math.min(15, Math.max(0, Math.round(w[off + i] / s32) + zp)) : zp;
        packed[(n * nb + b) * (bs / 2) + (i >> 1)] |= q << ((i & 1) * 4);
      }
    }
  }
  return { N, K, blockSize: bs, packed, scales, zeroPoints };
}

/** the float32 values MatMulNBits multiplies by, [N, K] */
export function dequantizeInt4(q: Int4Weight): Float32Array {
  const { N, K, blockSize: bs } = q;
  const nb = K / bs,
    zpBytes = Math.ceil(nb / 2);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const zp = q.zeroPoints ? (q.zeroPoints[n * zpBytes + (b >> 1)] >> ((b & 1) * 4)) & 15 : 8;
      const s = q.scales[n * nb + b];
      for (let i = 0; i < bs; i++) {
        const code = (q.packed[(n * nb + b) * (bs / 2) + (i >> 1)] >> ((i & 1) * 4)) & 15;
        out[n * K + b * bs + i] = Math.fround((code - zp) * s);
      }
    }
  }
  return out;
}
