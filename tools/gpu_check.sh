#!/usr/bin/env bash
# The one prepared GPU session (issues 7, 8, 9): build pylm with CUDA for sm_90, run every `cuda`
# test, run the GPU benchmarks, and write a log plus JSON results under $OUT. Run it through the
# device tool from the repository root, with the gguf wheel carried (the device has no network):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .whl gguf
#   run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=560)
# Budget: ~8 minutes in all (build ~2-3 min on 16 cores, tests ~1-2 min, benchmarks ~3 min).
set -uo pipefail
OUT=${OUT:-/tmp/pylm_gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi || true
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYLM_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90" CMAKE_BUILD_PARALLEL_LEVEL=16
time pip install -q --no-build-isolation --no-deps . || { echo "BUILD FAILED"; exit 1; }
cd /tmp  # import the installed package, not the source tree
python -c "import pylm, json; print(json.dumps(pylm.backend_info(), indent=1))" | tee "$OUT/backend_info.json"
R=$OLDPWD
timeout 240 python -m pytest -q -m cuda "$R/tests" --junitxml="$OUT/cuda_tests.xml" -p no:cacheprovider \
    2>&1 | tail -60
B="$R/benchmarks"
timeout 90 python "$B/bench_cuda_gemm.py" --quick --json "$OUT/bench_cuda_gemm.json" || true
timeout 60 python "$B/bench_cuda_attention.py" --quick --json "$OUT/bench_cuda_attention.json" || true
timeout 40 python "$B/bench_cuda_elementwise.py" --quick --json "$OUT/bench_cuda_elementwise.json" || true
timeout 100 python "$B/bench_e2e.py" --device cuda --synthetic --quick --json "$OUT/bench_e2e_cuda.json" || true
timeout 100 python "$B/bench_train.py" --device cuda --quick --json "$OUT/bench_train_cuda.json" || true
echo "done"
