#!/usr/bin/env bash
# The one prepared GPU session: build with CUDA for sm_90, run the GPU tests and the kernel
# benchmarks, write everything under $OUT. Run through the device tool, e.g.
#   run(command="bash tools/gpu_check.sh", carry=["wheels"], timeout_s=540)
# where wheels/ holds the gguf wheel (`pip download gguf --no-deps -d wheels`) — the device has
# no network.
set -uo pipefail
OUT=${OUT:-/tmp/pylm_gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
nvidia-smi || true
if ls wheels/*.whl >/dev/null 2>&1; then pip install --no-deps --no-index wheels/*.whl; fi
export PYLM_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90" CMAKE_BUILD_PARALLEL_LEVEL=16
time pip install --no-build-isolation --no-deps . || { echo "BUILD FAILED"; exit 1; }
python -c "import pylm, json; print(json.dumps(pylm.backend_info(), indent=1))" | tee "$OUT/backend_info.json"
python -m pytest -q -m cuda tests --junitxml="$OUT/cuda_tests.xml" 2>&1 | tail -40
if [ -f benchmarks/bench_kernels.py ]; then
    timeout 120 python benchmarks/bench_kernels.py --quick --json "$OUT/bench_kernels.json" || true
fi
echo "done"
