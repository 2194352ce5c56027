/**
 * PNG in and out through fast-png (pure JS, so the same code runs in Node and the browser). Decoding accepts
 * only what the pipeline can use without guessing: 8-bit RGB, or 8-bit RGBA with the alpha dropped.
 */
import { decode, encode } from 'fast-png';
import type { RgbImage } from './raster.js';

export function encodePng(img: RgbImage): Uint8Array {
  if (img.data.length !== img.width * img.height * 3)
    throw new Error(`encodePng: expected ${img.width}x${img.height}x3 bytes, got ${img.data.length}`);
  return encode({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8 });
}

export function decodePng(bytes: Uint8Array, file = 'PNG'): RgbImage {
  let png;
  try {
    // checkCrc: a damaged chunk is an error, not an image with wrong pixels
    png = decode(bytes, { checkCrc: true });
  } catch (e) {
    throw new Error(`${file}: not a readable PNG (${(e as Error).message})`, { cause: e });
  }
  if (png.depth !== 8 || (png.channels !== 3 && png.channels !== 4) || png.palette) {
    throw new Error(
      `${file}: unsupported PNG (bit depth ${png.depth}, ${png.channels} channel(s)${png.palette ? ', palette' : ''}); ` +
        'need 8-bit RGB or RGBA; re-save it as 8-bit RGB',
    );
  }
  const n = png.width * png.height,
    src = png.data;
  if (!(n > 0) || src.length < n * png.channels)
    throw new Error(`${file}: damaged PNG (${png.width}x${png.height} pixels, ${src.length} bytes of pixel data); re-save it`);
  const data = new Uint8Array(n * 3);
  if (png.channels === 3) data.set(src.subarray(0, n * 3));
  else
    for (let i = 0; i < n; i++) {
      data[3 * i] = src[4 * i];
      data[3 * i + 1] = src[4 * i + 1];
      data[3 * i + 2] = src[4 * i + 2];
    }
  return { width: png.width, height: png.height, data };
}
