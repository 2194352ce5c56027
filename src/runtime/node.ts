/**
 * onnxruntime-node behind the Runtime interface: the CPU EP, WebGPU through Dawn (Vulkan), and CUDA where
 * onnxruntime-node's CUDA EP is installed.
 */
import { existsSync, readdirSync } from 'node:fs';
import { type EP, type OrtModule, Runtime } from './runtime.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * Dawn needs a Vulkan driver. On a machine without a GPU driver, Debian's chromium ships SwiftShader (a CPU
 * Vulkan): use it when no other driver is registered, and say so.
 */
function vulkanNote(): string {
  if (process.env.VK_ICD_FILENAMES) return `Vulkan ICD ${process.env.VK_ICD_FILENAMES}`;
  const dirs = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'];
  const hasDriver = dirs.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json') && !f.includes('lvp')));
  if (!hasDriver && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    return 'no Vulkan GPU driver found: using SwiftShader (CPU Vulkan, slow) from Debian\'s chromium';
  }
  return 'system Vulkan driver';
}

export async function createNodeRuntime(ep: EP = 'cpu'): Promise<Runtime> {
  if (ep === 'wasm') throw new Error('the wasm EP is for browsers; in Node use cpu, webgpu or cuda');
  const note = ep === 'webgpu' ? vulkanNote() : '';
  const ort = (await import('onnxruntime-node')) as unknown as OrtModule & { listSupportedBackends?: () => Array<{ name: string }> };
  const supported = ort.listSupportedBackends?.().map((b) => b.name) ?? [];
  if (supported.length && !supported.includes(ep)) {
    throw new Error(`onnxruntime-node on this machine offers ${supported.join(', ')}, not ${ep}` +
      (ep === 'cuda' ? ': install the CUDA build (ONNXRUNTIME_NODE_INSTALL_CUDA=v12 npm rebuild onnxruntime-node)' : ''));
  }
  return new Runtime(ort, 'node', ep, ep === 'webgpu' ? `onnxruntime-node WebGPU (Dawn); ${note}` : `onnxruntime-node ${ep}`);
}
