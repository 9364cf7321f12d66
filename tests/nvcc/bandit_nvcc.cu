// examples/bandit.cpp compiled by nvcc: the trainers in a CUDA translation unit (ctest compares
// its output with the g++ build's; runs without a GPU).
#include "../../examples/bandit.cpp"
