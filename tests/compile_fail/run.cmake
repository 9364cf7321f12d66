# Compiles one translation unit that must NOT compile, and checks that the
# compiler's output contains the sentence given on its "// expect:" line.
file(STRINGS ${SOURCE} expect_line REGEX "^// expect: ")
string(REGEX REPLACE "^// expect: " "" expect "${expect_line}")
execute_process(
  COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
string(FIND "${out}${err}" "${expect}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the compiler rejected ${SOURCE} without the expected sentence:\n  ${expect}\n--- output ---\n${err}")
endif()
message(STATUS "rejected with: ${expect}")
