cmake_minimum_required(VERSION 3.21)
# The layer table of docs/design.md ("The layers as they are"), checked:
# a header's quoted includes may reach its own folder and the folders below
# it, never above. Exceptions are listed here, each with its reason.
set(rank_core 1)
set(rank_math 2)
set(rank_concepts 2)
set(rank_dist 2)
set(rank_adapt 2)
set(rank_backend 3)
set(rank_backend/cpu 3)
set(rank_ops 4)
set(rank_kl 5)
set(rank_advantage 5)
set(rank_objectives 6)
set(rank_train 7)
# the CUDA overloads implement the contracts of layers 4-7 (their params,
# rules and checks); the umbrella rlhf/cuda.hpp is the device's core
set(rank_backend/cuda 7)
set(rank_config 8)
set(rank_. 9)
# file -> an include it may have although the folder sits higher
set(allowed
  "backend/cpu/objective.hpp|ops/agg_rule.hpp"  # the aggregation arithmetic, on core/ only
  "backend/engine.hpp|ops/agg_rule.hpp"         # the same, in the engines' contract
  "backend/cuda/common.cuh|cuda.hpp"            # the device tag and buffers
  "backend/cuda/kl.cuh|cuda.hpp"
  "backend/cuda/train.cuh|rlhf.hpp")            # the device trainers: every device op, then the trainers
file(GLOB_RECURSE headers RELATIVE ${INCLUDE_DIR}/rlhf ${INCLUDE_DIR}/rlhf/*.hpp ${INCLUDE_DIR}/rlhf/*.cuh)
set(bad "")
set(n 0)
foreach(h IN LISTS headers)
  get_filename_component(dir ${h} DIRECTORY)
  if(dir STREQUAL "")
    set(dir ".")
  endif()
  if(NOT DEFINED rank_${dir})
    string(APPEND bad "\n  ${h}: the folder '${dir}' has no layer (add it to tests/layers.cmake and docs/design.md)")
    continue()
  endif()
  file(STRINGS ${INCLUDE_DIR}/rlhf/${h} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(l IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" inc "${l}")
    get_filename_component(abs ${INCLUDE_DIR}/rlhf/${dir}/${inc} ABSOLUTE)
    file(RELATIVE_PATH target ${INCLUDE_DIR}/rlhf ${abs})
    get_filename_component(tdir ${target} DIRECTORY)
    if(tdir STREQUAL "")
      set(tdir ".")
    endif()
    math(EXPR n "${n} + 1")
    if(NOT DEFINED rank_${tdir})
      string(APPEND bad "\n  ${h} includes ${target}: outside the layers")
    elseif(rank_${tdir} GREATER rank_${dir} AND NOT "${h}|${target}" IN_LIST allowed)
      string(APPEND bad "\n  ${h} (${dir}, layer ${rank_${dir}}) includes ${target} (${tdir}, layer ${rank_${tdir}})")
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "includes that run up the layers:${bad}")
endif()
message(STATUS "layers: ${n} includes, none runs up")
