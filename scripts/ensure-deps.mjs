// Installs the locked dependencies when they are missing or older than package-lock.json, so that
// `npm start` and `npm test` are each one command on a fresh clone.
import { execSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';

const marker = 'node_modules/.package-lock.json';
const stale = !existsSync(marker) || statSync('package-lock.json').mtimeMs > statSync(marker).mtimeMs + 1000;
if (stale) {
  console.error('vco-lab: installing dependencies (npm ci)…');
  // onnxruntime-node's postinstall would fetch CUDA binaries from the network; its CPU and WebGPU EPs ship inside
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
}
