import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

// Cross-origin isolation (COOP/COEP) lets onnxruntime-web's wasm backend use threads (SharedArrayBuffer).
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  // relative URLs: the build works from any folder of any static host (a lab's page, GitHub Pages)
  base: './',
  plugins: [svelte()],
  publicDir: 'static',
  server: { headers: isolation, port: 5173 },
  preview: { headers: isolation, port: 4173 },
  worker: { format: 'es' },
  optimizeDeps: {
    // onnxruntime-web finds its .wasm (and starts its wasm threads) relative to its own file: serve
    // node_modules/onnxruntime-web/dist as is rather than pre-bundled into .vite/deps
    exclude: ['onnxruntime-web'],
    // dependencies first met in the engine worker: optimise them up front, or the dev server re-optimises
    // and reloads the page mid-run when a worker first imports them
    include: ['comlink', 'onnx-proto'],
    entries: ['index.html', 'src/worker/engine.worker.ts'],
  },
  build: { target: 'es2022' },
});
