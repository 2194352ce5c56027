/**
 * onnxruntime-node behind the Runtime interface: the CPU EP, WebGPU through Dawn (Vulkan), and CUDA where
 * onnxruntime-node's CUDA EP is installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
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
 * Why onnxruntime-node's CUDA EP cannot start here, or null: its provider libraries are not installed (its own
 * installer fetches them from NuGet; `npm run setup:cuda` takes them from PyPI), or a library they link is not
 * found (ldd), or there is no NVIDIA driver. ORT's own message names none of this.
 */
export function cudaProblem(): string | null {
  const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  const bin = join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
  const provider = join(bin, `libonnxruntime_providers_cuda.so`);
  if (process.platform !== 'linux') return `onnxruntime-node's CUDA EP runs on Linux x64 only (this is ${process.platform})`;
  if (!existsSync(provider) || !existsSync(join(bin, 'libonnxruntime_providers_shared.so')))
    return `the CUDA EP's provider libraries are not installed (${provider}): run \`npm run setup:cuda\``;
  const ldd = spawnSync('ldd', [provider], { encoding: 'utf8' });
  const missing = (ldd.stdout ?? '')
    .split('\n')
    .filter((l) => l.includes('not found'))
    .map((l) => l.trim().split(' ')[0]);
  if (missing.includes('libcuda.so.1'))
    return 'no NVIDIA driver on this machine (libcuda.so.1 not found): --ep cuda needs an NVIDIA GPU';
  if (missing.length)
    return (
      `the CUDA EP needs ${missing.join(', ')}, which ${missing.length > 1 ? 'are' : 'is'} not found: run \`npm run setup:cuda\` ` +
      '(installs them from PyPI; bin/vco-lab.mjs adds them to LD_LIBRARY_PATH), or add your CUDA toolkit and cuDNN to LD_LIBRARY_PATH'
    );
  return null;
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
  if (supported.length && !supported.includes(ep))
    throw new Error(`onnxruntime-node on this machine offers ${supported.join(', ')}, not ${ep}`);
  if (ep === 'cuda') {
    const why = cudaProblem();
    if (why) throw new Error(`--ep cuda: ${why}`);
  }
  return new Runtime(ort, 'node', ep, ep === 'webgpu' ? `onnxruntime-node WebGPU (Dawn); ${note}` : `onnxruntime-node ${ep}`);
}
