# Builds and installs rlhf++ into a scratch prefix, then builds the consumer
# project twice: with find_package(rlhf CONFIG REQUIRED) and with
# add_subdirectory. Each consumer binary runs and checks a value.
foreach(v RLHF_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run.cmake needs -D${v}=...")
  endif()
endforeach()
set(compiler_arg)
if(DEFINED CMAKE_CXX_COMPILER)
  set(compiler_arg -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER})
endif()

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
# the one documented switch of a consumer build: no tools, no examples, no
# nvcc code, no test dependency (nlohmann-json, Catch2)
run(${CMAKE_COMMAND} -S ${RLHF_SOURCE_DIR} -B ${WORK_DIR}/rlhf-build ${compiler_arg}
    -DRLHF_BUILD_TESTS=OFF -DCMAKE_INSTALL_PREFIX=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/rlhf-build)
foreach(built rlhf-conformance examples tests)
  if(EXISTS ${WORK_DIR}/rlhf-build/${built})
    message(FATAL_ERROR "a consumer build (-DRLHF_BUILD_TESTS=OFF) built '${built}'")
  endif()
endforeach()
run(${CMAKE_COMMAND} --install ${WORK_DIR}/rlhf-build)

run(${CMAKE_COMMAND} -S ${RLHF_SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/find-package ${compiler_arg}
    -DCMAKE_PREFIX_PATH=${prefix} -DEXPECT_CUDA=${EXPECT_CUDA} -DEXPECT_TORCH=${EXPECT_TORCH})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/find-package)
run(${WORK_DIR}/find-package/consumer)
run(${WORK_DIR}/find-package/consumer_experiment)

run(${CMAKE_COMMAND} -S ${RLHF_SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/subdirectory ${compiler_arg}
    -DUSE_SUBDIRECTORY=ON -DRLHF_SOURCE_DIR=${RLHF_SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/subdirectory)
run(${WORK_DIR}/subdirectory/consumer)
run(${WORK_DIR}/subdirectory/consumer_experiment)
message(STATUS "consumer: find_package and add_subdirectory both work")
