#!/usr/bin/env node
/**
 * `npm run setup:cuda`: onnxruntime-node's CUDA EP without its installer. That installer downloads the CUDA
 * provider libraries from NuGet, which many machines cannot reach; the same libraries, built from the same
 * ORT release, ship in PyPI's onnxruntime-gpu wheel. This script:
 *   1. downloads onnxruntime-gpu==<the installed onnxruntime-node's version> (no dependencies) with pip,
 *   2. copies its libonnxruntime_providers_{shared,cuda}.so next to onnxruntime-node's libonnxruntime.so.1,
 *      where onnxruntime-node's own installer would put them,
 *   3. unless --no-cuda-libs (a machine with the CUDA toolkit and cuDNN installed), pip-installs the NVIDIA
 *      runtime libraries the wheel names (cudart, cuBLAS, cuRAND, cuFFT, NVRTC, cuDNN) into .cache/cuda/site
 *      and writes their folders to .cache/cuda/ld-library-path, which bin/vco-lab.mjs puts on LD_LIBRARY_PATH
 *      for --ep cuda / --device cuda,
 *   4. checks with ldd that every library the CUDA provider needs is found, and says what is missing.
 * The NVIDIA driver (libcuda.so.1) comes with the machine's GPU, not from here.
 *
 *   npm run setup:cuda [-- --no-cuda-libs] [-- --python python3]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const python = args.includes('--python') ? args[args.indexOf('--python') + 1] : 'python3';
const withLibs = !args.includes('--no-cuda-libs');
const cache = join(root, '.cache', 'cuda');
const say = (s) => process.stdout.write(`setup:cuda: ${s}\n`);
const fail = (s) => {
  process.stderr.write(`setup:cuda: ${s}\n`);
  process.exit(1);
};

if (process.platform !== 'linux' || process.arch !== 'x64')
  fail(`onnxruntime-node's CUDA EP is built for linux/x64; this machine is ${process.platform}/${process.arch}`);
const require = createRequire(import.meta.url);
const ortPkg = require.resolve('onnxruntime-node/package.json', { paths: [root] });
const version = JSON.parse(readFileSync(ortPkg, 'utf8')).version;
const binDir = join(dirname(ortPkg), 'bin', 'napi-v6', 'linux', 'x64');
if (!existsSync(join(binDir, 'libonnxruntime.so.1'))) fail(`${binDir}/libonnxruntime.so.1 not found: run npm ci first`);
if (spawnSync(python, ['-m', 'pip', '--version']).status !== 0)
  fail(`${python} -m pip is not available: install Python 3 with pip, or pass --python PATH`);

// 1. the wheel
const wheels = join(cache, 'wheels');
mkdirSync(wheels, { recursive: true });
let wheel = readdirSync(wheels).find((f) => f.startsWith(`onnxruntime_gpu-${version}-`) && f.endsWith('.whl'));
if (!wheel) {
  say(`downloading onnxruntime-gpu==${version} from PyPI (about 250 MB)`);
  const r = spawnSync(
    python,
    ['-m', 'pip', 'download', `onnxruntime-gpu==${version}`, '--no-deps', '--only-binary=:all:', '-d', wheels],
    {
      stdio: 'inherit',
    },
  );
  if (r.status !== 0)
    fail(`pip could not download onnxruntime-gpu==${version} (is PyPI reachable? is there a wheel for this Python?)`);
  wheel = readdirSync(wheels).find((f) => f.startsWith(`onnxruntime_gpu-${version}-`) && f.endsWith('.whl'));
  if (!wheel) fail(`no onnxruntime_gpu-${version} wheel in ${wheels} after the download`);
}

// 2. the provider libraries, and the wheel's own list of the NVIDIA packages it needs
const extract = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
out = {}
for n in z.namelist():
    if n.startswith('onnxruntime/capi/libonnxruntime_providers_') and n.endswith('.so'):
        open(sys.argv[2] + '/' + n.rsplit('/', 1)[1], 'wb').write(z.read(n))
    if n.endswith('.dist-info/METADATA'):
        out['requires'] = [l.split(':', 1)[1].strip() for l in z.read(n).decode().splitlines() if l.startswith('Requires-Dist:') and 'extra ==' in l and ('"cuda"' in l or '"cudnn"' in l)]
print(json.dumps(out))
`;
const meta = JSON.parse(execFileSync(python, ['-c', extract, join(wheels, wheel), binDir], { encoding: 'utf8' }));
for (const f of ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'])
  if (!existsSync(join(binDir, f))) fail(`${f} was not in ${wheel}`);
say(`installed the CUDA provider libraries of onnxruntime-gpu ${version} into ${binDir}`);

// 3. the NVIDIA runtime libraries
const libDirs = [];
if (withLibs) {
  const reqs = meta.requires.map((r) => r.split(';')[0].trim());
  // the CUDA provider links cuBLAS too, which the wheel leaves to cuDNN's dependencies: name it, matching cudart
  const cudart = reqs.find((r) => r.startsWith('nvidia-cuda-runtime'));
  const major = /~=\s*(\d+)/.exec(cudart ?? '')?.[1];
  if (major && !reqs.some((r) => r.startsWith('nvidia-cublas'))) reqs.push(`nvidia-cublas~=${major}.0`);
  const site = join(cache, 'site');
  say(`installing ${reqs.join(', ')} into ${site} (a few GB)`);
  const r = spawnSync(python, ['-m', 'pip', 'install', '--upgrade', '--target', site, ...reqs], { stdio: 'inherit' });
  if (r.status !== 0)
    fail('pip could not install the NVIDIA libraries; install the CUDA toolkit and cuDNN instead and rerun with --no-cuda-libs');
  const nvidia = join(site, 'nvidia');
  for (const d of existsSync(nvidia) ? readdirSync(nvidia) : []) {
    for (const sub of ['lib', join('cu13', 'lib'), join('cu12', 'lib')])
      if (existsSync(join(nvidia, d, sub))) libDirs.push(join(nvidia, d, sub));
  }
  writeFileSync(join(cache, 'ld-library-path'), `${libDirs.join(':')}\n`);
  say(`wrote ${join(cache, 'ld-library-path')}: bin/vco-lab.mjs adds these folders to LD_LIBRARY_PATH for --ep cuda`);
}

// 4. what the provider still cannot find
const env = { ...process.env, LD_LIBRARY_PATH: [...libDirs, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
const ldd = spawnSync('ldd', [join(binDir, 'libonnxruntime_providers_cuda.so')], { encoding: 'utf8', env });
const missing = (ldd.stdout ?? '')
  .split('\n')
  .filter((l) => l.includes('not found'))
  .map((l) => l.trim().split(' ')[0]);
if (!missing.length) say('every library the CUDA provider links is found: vco-lab ... --ep cuda is ready');
else if (missing.length === 1 && missing[0] === 'libcuda.so.1')
  say('every CUDA library is in place; libcuda.so.1 (the NVIDIA driver) is not on this machine: --ep cuda needs an NVIDIA GPU');
else say(`still not found: ${missing.join(', ')} (add the folders that hold them to LD_LIBRARY_PATH)`);
