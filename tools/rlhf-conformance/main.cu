// The runner built by nvcc: the same program with --backend cuda available
// (the CUDA overloads of the ops, backend/cuda/*.cuh).
#define RLHF_CONFORMANCE_CUDA 1
#include "main.cpp"
