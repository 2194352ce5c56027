/**
 * Image files as the pipeline reads them, the same bytes to the same pixels in Node and in the browser: PNG
 * through fast-png (chunk checksums verified) and baseline/progressive JPEG through jpeg-js (pure JS, so no
 * platform decoder decides the pixels). JPEG decoders differ by a grey level here and there (jpeg-js is not
 * libjpeg-turbo, which Pillow uses); PNG is exact.
 */
import jpeg from 'jpeg-js';
import { decodePng } from './png.js';
import type { RgbImage } from './raster.js';

const isPng = (b: Uint8Array) => b.length >= 4 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
const isJpeg = (b: Uint8Array) => b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

/** a PNG or JPEG file's pixels as 8-bit RGB, or an error naming the file */
export function decodeImage(bytes: Uint8Array, file: string): RgbImage {
  if (isPng(bytes)) return decodePng(bytes, file);
  if (!isJpeg(bytes))
    throw new Error(
      `${file}: neither a PNG nor a JPEG file (it starts with ${[...bytes.subarray(0, 4)].map((x) => x.toString(16).padStart(2, '0')).join(' ')}); convert it to PNG`,
    );
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 });
  } catch (e) {
    throw new Error(`${file}: not a readable JPEG (${e instanceof Error ? e.message : String(e)}); re-save it`, { cause: e });
  }
  if (!(img.width > 0 && img.height > 0) || img.data.length !== img.width * img.height * 3)
    throw new Error(`${file}: damaged JPEG (${img.width}x${img.height} pixels, ${img.data.length} bytes); re-save it`);
  return { width: img.width, height: img.height, data: img.data };
}
