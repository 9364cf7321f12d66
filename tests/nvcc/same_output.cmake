# Runs two programs with the same arguments and fails unless their standard
# outputs are identical (the nvcc and the g++ builds of one example).
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${A} ${args} OUTPUT_VARIABLE out_a RESULT_VARIABLE rc_a ERROR_QUIET)
execute_process(COMMAND ${B} ${args} OUTPUT_VARIABLE out_b RESULT_VARIABLE rc_b ERROR_QUIET)
if(NOT rc_a EQUAL 0 OR NOT rc_b EQUAL 0)
  message(FATAL_ERROR "exit codes ${rc_a} (${A}) and ${rc_b} (${B})")
endif()
if(NOT out_a STREQUAL out_b)
  message(FATAL_ERROR "the outputs differ:\n--- ${A}\n${out_a}\n--- ${B}\n${out_b}")
endif()
message(STATUS "identical outputs:\n${out_a}")
