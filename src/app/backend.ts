/**
 * Which compute backend this browser offers: WebGPU (with the adapter's name and the features the engine
 * cares about), else onnxruntime-web's wasm backend, with the reason WebGPU is not used.
 */
export interface BackendReport {
  backend: 'webgpu' | 'wasm';
  /** why this backend: the adapter's description, or why WebGPU was not available */
  detail: string;
  shaderF16: boolean;
  /** wasm threads need cross-origin isolation (COOP/COEP headers) */
  crossOriginIsolated: boolean;
  threads: number;
}

export async function detectBackend(nav: Navigator = navigator): Promise<BackendReport> {
  const common = {
    crossOriginIsolated: typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated,
    threads: nav.hardwareConcurrency ?? 1,
  };
  const gpu = (nav as Navigator & { gpu?: GpuLike }).gpu;
  if (!gpu) {
    return {
      backend: 'wasm',
      detail:
        'this browser exposes no WebGPU (navigator.gpu is missing); ' + 'scoring and training run on the CPU through WebAssembly',
      shaderF16: false,
      ...common,
    };
  }
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      return {
        backend: 'wasm',
        detail: 'WebGPU is present but gave no adapter (blocklisted GPU or disabled); ' + 'running on WebAssembly',
        shaderF16: false,
        ...common,
      };
    }
    const info = adapter.info ?? {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unnamed adapter';
    return { backend: 'webgpu', detail: name, shaderF16: adapter.features.has('shader-f16'), ...common };
  } catch (e) {
    return {
      backend: 'wasm',
      detail: `WebGPU adapter request failed (${(e as Error).message}); running on WebAssembly`,
      shaderF16: false,
      ...common,
    };
  }
}

interface GpuLike {
  requestAdapter(o?: { powerPreference?: string }): Promise<{
    info?: { vendor?: string; architecture?: string; description?: string };
    features: { has(f: string): boolean };
  } | null>;
}
