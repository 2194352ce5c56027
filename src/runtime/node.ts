/**
 * onnxruntime-node behind the Runtime interface: the CPU EP, WebGPU through Dawn (Vulkan), and CUDA where
 * onnxruntime-node's CUDA EP is installed.
 */
import { existsSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type EP, type OrtModule, Runtime } from './runtime.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Dawn needs a Vulkan driver. On a machine with no GPU device (no /dev/dri render node, no /dev/nvidia*), the
 * Mesa ICDs that come with Debian's chromium find nothing and Dawn refuses lavapipe; chromium also ships
 * SwiftShader (a CPU Vulkan), so use it there, and say so.
 */
function vulkanNote(): string {
  if (process.env.VK_ICD_FILENAMES) return `Vulkan ICD ${process.env.VK_ICD_FILENAMES}`;
  const gpuDevice =
    (existsSync('/dev/dri') && readdirSync('/dev/dri').some((f) => f.startsWith('renderD'))) ||
    (existsSync('/dev') && readdirSync('/dev').some((f) => /^nvidia\d+$/.test(f)));
  if (!gpuDevice && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    return "no GPU device found: using SwiftShader (a CPU Vulkan, slow) from Debian's chromium";
  }
  return gpuDevice ? 'system Vulkan driver' : 'no GPU device and no SwiftShader: WebGPU will find no adapter';
}

/**
 * onnxruntime-web's wasm EP in Node: the browser's CPU kernels (MLAS compiled to wasm SIMD), so that a Node
 * run can be compared with a page's wasm run kernel for kernel. `threads` as the page picks them (a
 * cross-origin isolated page uses min(4, cores)).
 */
async function createNodeWasmRuntime(threads: number): Promise<Runtime> {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  const mod: OrtModule = {
    Tensor: ort.Tensor as unknown as OrtModule['Tensor'],
    InferenceSession: { create: (model, options) => ort.InferenceSession.create(model, { logSeverityLevel: 3, ...options }) },
  };
  return new Runtime(mod, 'node', 'wasm', `onnxruntime-web wasm EP in Node; ${threads} wasm thread(s)`);
}

export async function createNodeRuntime(ep: EP = 'cpu', o: { wasmThreads?: number } = {}): Promise<Runtime> {
  if (ep === 'wasm') return createNodeWasmRuntime(o.wasmThreads ?? Math.max(1, Math.min(4, availableParallelism())));
  const note = ep === 'webgpu' ? vulkanNote() : '';
  const ort = (await import('onnxruntime-node')) as unknown as OrtModule & {
    listSupportedBackends?: () => Array<{ name: string }>;
  };
  const supported = ort.listSupportedBackends?.().map((b) => b.name) ?? [];
  if (supported.length && !supported.includes(ep)) {
    throw new Error(
      `onnxruntime-node on this machine offers ${supported.join(', ')}, not ${ep}` +
        (ep === 'cuda' ? ': install the CUDA build (ONNXRUNTIME_NODE_INSTALL_CUDA=v12 npm rebuild onnxruntime-node)' : ''),
    );
  }
  return new Runtime(ort, 'node', ep, ep === 'webgpu' ? `onnxruntime-node WebGPU (Dawn); ${note}` : `onnxruntime-node ${ep}`);
}
