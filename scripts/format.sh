#!/usr/bin/env bash
# Formats every C++ source of the project in place (clang-format 14, as the
# `format` test checks).
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files -- 'include/*.hpp' 'include/*.cuh' 'tests/*.hpp' 'tests/*.cpp' 'tests/*.cu' 'tools/*.hpp' 'tools/*.cpp' \
  'tools/*.cu' 'examples/*.hpp' 'examples/*.cpp' 'bench/*.hpp' 'bench/*.cpp' 'bench/*.cu' | xargs clang-format-14 -i
