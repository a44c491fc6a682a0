#!/usr/bin/env bash
# Development build: compiles pylm._core (and pylm._cuda when nvcc is found) into ./pylm/
# so that `PYTHONPATH=$PWD python -m pytest tests` runs against the working tree.
# Usage: tools/dev_build.sh [build-dir] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/dev}
shift || true
PYBIND11_DIR=$(python -c "import pybind11; print(pybind11.get_cmake_dir())")
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPYLM_INPLACE=ON \
    -Dpybind11_DIR="$PYBIND11_DIR" -DPython_EXECUTABLE="$(command -v python)" \
    -DPYLM_CUDA="${PYLM_CUDA:-OFF}" "$@" >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}"
