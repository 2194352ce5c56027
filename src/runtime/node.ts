/**
 * onnxruntime-node behind the Runtime interface: the CPU EP, WebGPU through Dawn (Vulkan), and CUDA where
 * onnxruntime-node's CUDA EP is installed.
 */
import { existsSync, readdirSync } from 'node:fs';
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

export async function createNodeRuntime(ep: EP = 'cpu'): Promise<Runtime> {
  if (ep === 'wasm') throw new Error('the wasm EP is for browsers; in Node use cpu, webgpu or cuda');
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
