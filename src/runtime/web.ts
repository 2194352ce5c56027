/**
 * onnxruntime-web behind the Runtime interface: the WebGPU EP where the browser gives an adapter, else the
 * wasm (CPU) EP, with the reason.
 *
 * Which build: onnxruntime-web 1.30's default export (dist/ort.bundle.min.mjs) is the JSEP build
 * (ort-wasm-simd-threaded.jsep.wasm): the long-standing JavaScript WebGPU EP plus the wasm CPU EP, in one
 * file. `onnxruntime-web/webgpu` (ort.webgpu.bundle.min.mjs, ort-wasm-simd-threaded.asyncify.wasm) is the
 * newer native C++ WebGPU EP compiled to wasm; we use the default build.
 *
 * ORT is imported dynamically so that, in a production build, it lands in a chunk of its own: its wasm
 * threads start module workers on `import.meta.url` of the file ORT lives in, which must not be a file that
 * also runs application code (e.g. the engine worker's entry).
 */
import type { Tensor } from 'onnxruntime-common';
import { GraphBuilder } from '../onnx/ops.js';
import { serialize } from '../onnx/serialize.js';
import { type OrtModule, Runtime } from './runtime.js';

type OrtWeb = typeof import('onnxruntime-web');

/** ORT's WebGPU EP pads every buffer it allocates to 16 bytes and copies whole padded buffers */
export const GPU_BUFFER_ALIGNMENT = 16;

const GPU_DTYPES = new Set(['float32', 'float16', 'int32', 'int64', 'uint32', 'uint8', 'bool']);

// the GPUBufferUsage flags (spelled out: the global is missing where WebGPU is)
const STORAGE = 0x80,
  COPY_SRC = 0x04,
  COPY_DST = 0x08;

interface GpuDeviceLike {
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean }): GpuBufferLike;
  lost?: Promise<{ reason?: string; message?: string }>;
  destroy?(): void;
  queue: {
    writeBuffer(b: GpuBufferLike, offset: number, data: ArrayBufferView | ArrayBuffer, dataOffset?: number, size?: number): void;
  };
}
interface GpuBufferLike {
  size: number;
  destroy(): void;
}
interface GpuLike {
  requestAdapter(o?: { powerPreference?: string }): Promise<{
    info?: { vendor?: string; architecture?: string; description?: string };
  } | null>;
}

let ortPromise: Promise<OrtWeb> | undefined;

/** the onnxruntime-web module, configured once for this page or worker */
export function loadOrtWeb(): Promise<OrtWeb> {
  ortPromise ??= import('onnxruntime-web').then((ort) => {
    // threads need SharedArrayBuffer, i.e. a cross-origin isolated page or worker (COOP/COEP headers)
    const isolated = typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated;
    const cores = (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 1;
    // one core stays with the page's main thread: a worker that takes every core makes each of the page's
    // tasks wait for one (measured on 2 cores: 342 ms main-thread tasks while training with 2 threads)
    ort.env.wasm.numThreads = isolated ? Math.max(1, Math.min(4, cores - 1)) : 1;
    ort.env.wasm.proxy = false;
    ort.env.logLevel = 'error';
    return ort;
  });
  return ortPromise;
}

/** why WebGPU cannot be used here, or the adapter's name */
async function probeWebGpu(): Promise<{ ok: true; name: string } | { ok: false; why: string }> {
  const gpu = typeof navigator !== 'undefined' ? (navigator as Navigator & { gpu?: GpuLike }).gpu : undefined;
  if (!gpu) return { ok: false, why: 'this browser exposes no WebGPU (navigator.gpu is missing)' };
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { ok: false, why: 'WebGPU is present but gave no adapter (blocklisted GPU or disabled)' };
    const info = adapter.info ?? {};
    return { ok: true, name: [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unnamed adapter' };
  } catch (e) {
    return { ok: false, why: `WebGPU adapter request failed (${(e as Error).message})` };
  }
}

/** a one-node model: creating a session with it initialises the EP (and, for WebGPU, ORT's GPUDevice) */
function probeModel(): Uint8Array {
  const g = new GraphBuilder('probe');
  g.output(g.add(g.input('x', 'float32', [4]), 1), 'y');
  return serialize(g);
}

/**
 * A GPU-resident copy of a host tensor on ORT's own GPUDevice. The buffer is padded to 16 bytes (ORT's
 * WebGPU EP copies whole padded buffers) and destroyed when the tensor is disposed.
 */
export function gpuUploader(ort: OrtWeb, device: GpuDeviceLike): (t: Tensor) => Promise<Tensor> {
  return async (t) => {
    if (!GPU_DTYPES.has(t.type)) return t; // e.g. float64 or string: ORT takes no GPU buffer of these
    const src = t.data as ArrayBufferView;
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const size = Math.max(GPU_BUFFER_ALIGNMENT, Math.ceil(bytes.byteLength / GPU_BUFFER_ALIGNMENT) * GPU_BUFFER_ALIGNMENT);
    const buffer = device.createBuffer({ size, usage: STORAGE | COPY_SRC | COPY_DST });
    // writeBuffer wants a 4-byte multiple (and offset); copy into a padded array unless already aligned
    // (and a plain ArrayBuffer source: a view of the wasm heap may be a SharedArrayBuffer)
    if (bytes.byteLength === size && bytes.byteOffset % 4 === 0 && bytes.buffer instanceof ArrayBuffer) {
      device.queue.writeBuffer(buffer, 0, bytes.buffer, bytes.byteOffset, size);
    } else {
      const padded = new Uint8Array(size);
      padded.set(bytes);
      device.queue.writeBuffer(buffer, 0, padded, 0, size);
    }
    return ort.Tensor.fromGpuBuffer(buffer as never, {
      dataType: t.type as Tensor.GpuBufferDataTypes,
      dims: t.dims,
      dispose: () => buffer.destroy(),
    }) as Tensor;
  };
}

/**
 * ORT's module as the Runtime sees it, with sessions logging at `error` by default: ORT's session warnings
 * (e.g. "some nodes were not assigned to the preferred execution providers", which is routine: shape ops go
 * to the CPU on purpose) reach the console through emscripten's stderr as console.error otherwise.
 */
function asOrtModule(ort: OrtWeb): OrtModule {
  return {
    Tensor: ort.Tensor as unknown as OrtModule['Tensor'],
    InferenceSession: {
      create: (model, options) => ort.InferenceSession.create(model, { logSeverityLevel: 3, ...options }),
    },
  };
}

/**
 * The browser runtime: WebGPU when navigator.gpu gives an adapter and ORT's WebGPU EP starts on it, else
 * wasm, with the reason in `detail`. Works in a window and in a (module) worker.
 */
export interface WebRuntimeOptions {
  /** called once if the GPUDevice ORT runs on is lost (driver reset, another tab's crash, destroy()) */
  onDeviceLost?: (info: { reason: string; message: string }) => void;
}

/**
 * Every GPU buffer ORT's device holds, counted where they are made: createBuffer is wrapped so that the live
 * bytes (ORT's buffer pools included: a freed tensor's buffer stays allocated for reuse) and their peak are
 * known. WebGPU offers no query of a device's memory; this is the number that decides whether a run fits.
 */
export class GpuMemoryMeter {
  live = 0;
  peak = 0;
  buffers = 0;

  constructor(device: GpuDeviceLike) {
    const create = device.createBuffer.bind(device);
    device.createBuffer = (d) => {
      const b = create(d);
      const size = b.size;
      this.live += size;
      this.buffers++;
      if (this.live > this.peak) this.peak = this.live;
      const destroy = b.destroy.bind(b);
      let gone = false;
      b.destroy = () => {
        if (!gone) {
          gone = true;
          this.live -= size;
          this.buffers--;
        }
        destroy();
      };
      return b;
    };
  }

  /** start a new peak from what is live now */
  resetPeak(): void {
    this.peak = this.live;
  }
}

/** ORT's GPUDevice, where the WebGPU EP started (for loss handling and tests that simulate a loss) */
let ortDevice: GpuDeviceLike | undefined;

/**
 * Destroy the GPUDevice ORT runs on, as a driver reset would: every later GPU call fails and the device's
 * `lost` promise settles. For tests of the recovery path.
 */
export function loseWebGpuDevice(): boolean {
  if (!ortDevice?.destroy) return false;
  ortDevice.destroy();
  return true;
}

export async function createWebRuntime(prefer: 'webgpu' | 'wasm' = 'webgpu', o: WebRuntimeOptions = {}): Promise<Runtime> {
  const ort = await loadOrtWeb();
  const threads = `${ort.env.wasm.numThreads} wasm thread(s)`;
  if (prefer === 'wasm') return new Runtime(asOrtModule(ort), 'web', 'wasm', `wasm EP as requested; ${threads}`);

  const probe = await probeWebGpu();
  if (!probe.ok) return new Runtime(asOrtModule(ort), 'web', 'wasm', `${probe.why}; wasm EP, ${threads}`);
  try {
    // start the EP once; ORT then publishes the GPUDevice it created (a plain device in the JSEP build,
    // a Promise per the typings: await covers both)
    const s = await ort.InferenceSession.create(probeModel(), { executionProviders: ['webgpu'], logSeverityLevel: 3 });
    const x = new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [4]);
    const y = (await s.run({ x })).y;
    const got = Array.from((await y.getData()) as Float32Array);
    await s.release();
    if (got.join() !== '2,3,4,5') throw new Error(`probe model gave [${got}] instead of [2,3,4,5]`);
    const device = (await ort.env.webgpu.device) as unknown as GpuDeviceLike;
    if (!device) throw new Error('ORT published no GPUDevice');
    ortDevice = device;
    const meter = new GpuMemoryMeter(device);
    device.lost?.then((info) => o.onDeviceLost?.({ reason: info?.reason ?? 'unknown', message: info?.message ?? '' }));
    const rt = new Runtime(asOrtModule(ort), 'web', 'webgpu', `WebGPU: ${probe.name}`, gpuUploader(ort, device));
    rt.gpuMemory = meter;
    return rt;
  } catch (e) {
    return new Runtime(
      asOrtModule(ort),
      'web',
      'wasm',
      `WebGPU adapter ${probe.name} found, but ORT's WebGPU EP failed to start (${(e as Error).message}); wasm EP, ${threads}`,
    );
  }
}
