#!/bin/bash
# The GPU figures of BENCHMARKS.md in one prepared command, for the first task that is lent a GPU machine (the
# `device` tool: an H100/H200 with PyTorch but no Node and no network).
#
#   bash scripts/device-bench.sh pack    # here: bundle vco-lab into one file, pack Node + onnxruntime-node
#                                        # (../shared/tools/device-pack.sh), under the 64 MiB carry limit
#   then, through the device tool, with carry [".devcarry"]:
#   bash .devcarry/app/device-bench.sh run
#
# `run` measures, on the GPU, in one call: `vco-lab bench train --ep webgpu` (Dawn on the NVIDIA Vulkan ICD)
# for the SmolVLM-256M and llava-interleave-0.5B shapes, next to ../shared/anchors/pytorch-eager-h200.json;
# then the same with --ep cuda where onnxruntime's CUDA provider can be found on that machine (its 270 MB
# library cannot be carried: the script looks for one in the machine's Python packages). Results land in $OUT
# (the device tool brings them back). Not yet run: no task so far was lent a GPU.
set -euo pipefail
cmd=${1:-}
if [ "$cmd" = pack ]; then
  rm -rf .devcarry-app && mkdir -p .devcarry-app
  # one ES module with every dependency but onnxruntime-node (packed beside it by device-pack.sh)
  echo "import { main } from './src/node/cli.ts'; process.exitCode = await main(process.argv.slice(2));" |
    npx esbuild --sourcefile=entry.ts --loader=ts --bundle --platform=node --format=esm --target=node20 \
    --external:onnxruntime-node --external:onnxruntime-web --external:playwright-core --external:vite \
    --banner:js="import { createRequire as __cjsRequire } from 'node:module'; const require = __cjsRequire(import.meta.url);" \
    --outfile=.devcarry-app/vco-lab.mjs --log-level=warning
  cp scripts/device-bench.sh .devcarry-app/
  cp ../shared/anchors/pytorch-eager-h200.json .devcarry-app/ 2>/dev/null || true
  bash ../shared/tools/device-pack.sh .devcarry-app/vco-lab.mjs .devcarry-app/device-bench.sh \
    $( [ -f .devcarry-app/pytorch-eager-h200.json ] && echo .devcarry-app/pytorch-eager-h200.json )
  rm -rf .devcarry-app
  exit 0
fi
if [ "$cmd" != run ]; then
  echo "usage: bash scripts/device-bench.sh pack | bash .devcarry/app/device-bench.sh run" >&2
  exit 2
fi

bash .devcarry/setup.sh
export PATH=/tmp/node/bin:$PATH XDG_RUNTIME_DIR=/tmp
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
cd /tmp/app
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
node vco-lab.mjs bench train --ep webgpu --json --out "$OUT/bench-train-webgpu.json" > "$OUT/bench-train-webgpu.log" 2>&1 || true
# the CUDA EP: onnxruntime's provider library from the machine's Python packages, if there is one
prov=$(find / -name 'libonnxruntime_providers_cuda.so' -path '*onnxruntime*' 2>/dev/null | head -1 || true)
if [ -n "$prov" ]; then
  bin=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
  cp "$(dirname "$prov")"/libonnxruntime_providers_{shared,cuda}.so "$bin"/
  nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
  export LD_LIBRARY_PATH=$(find "${nv:-/nonexistent}"/nvidia -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
  node vco-lab.mjs bench train --ep cuda --json --out "$OUT/bench-train-cuda.json" > "$OUT/bench-train-cuda.log" 2>&1 || true
else
  echo "no libonnxruntime_providers_cuda.so on this machine: --ep cuda not measured" > "$OUT/bench-train-cuda.log"
fi
cp pytorch-eager-h200.json "$OUT/" 2>/dev/null || true
ls -la "$OUT"
