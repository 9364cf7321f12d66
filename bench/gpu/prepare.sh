#!/usr/bin/env bash
# Run HERE (the development machine) before sending the tree to a GPU machine:
# copies the third-party headers the GPU build needs (nlohmann/json, for
# the conformance runner; Boost.Hana, for the experiment layer's device test) into .gpu_deps/include, and downloads the wheels of
# liger-kernel and cut-cross-entropy into .whl/ (pure Python + Triton; torch
# and triton are already on the GPU machine). Both folders are git-ignored
# and travel with the device tool's `carry`:
#   carry: [".gpu_deps", ".whl"]   command: bench/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu_deps/include .whl
cp -r /usr/include/nlohmann .gpu_deps/include/
# Boost.Hana alone (the experiment layer: tests/cuda/test_bandit_cuda.cu)
mkdir -p .gpu_deps/include/boost
cp -r /usr/include/boost/hana /usr/include/boost/hana.hpp .gpu_deps/include/boost/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl liger-kernel==0.8.5 cut-cross-entropy==25.1.1
du -sh .gpu_deps .whl
