cmake_minimum_required(VERSION 3.21)
# Every C++ source of the project is formatted as .clang-format says
# (clang-format 14: another version formats some constructs differently).
# Run `clang-format-14 -i <file>` to fix one; scripts/format.sh fixes all.
file(GLOB_RECURSE files RELATIVE ${SOURCE_DIR}
  ${SOURCE_DIR}/include/*.hpp ${SOURCE_DIR}/include/*.cuh
  ${SOURCE_DIR}/tests/*.hpp ${SOURCE_DIR}/tests/*.cpp ${SOURCE_DIR}/tests/*.cu
  ${SOURCE_DIR}/tools/*.hpp ${SOURCE_DIR}/tools/*.cpp ${SOURCE_DIR}/tools/*.cu
  ${SOURCE_DIR}/examples/*.hpp ${SOURCE_DIR}/examples/*.cpp
  ${SOURCE_DIR}/bench/*.hpp ${SOURCE_DIR}/bench/*.cpp ${SOURCE_DIR}/bench/*.cu)
list(LENGTH files n)
if(n LESS 50)
  message(FATAL_ERROR "format: found only ${n} sources under ${SOURCE_DIR}")
endif()
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${files}
  WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "format: sources differ from .clang-format (fix: scripts/format.sh)\n${err}")
endif()
message(STATUS "format: ${n} sources as .clang-format says")
