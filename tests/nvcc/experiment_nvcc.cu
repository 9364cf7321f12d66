// tests/nvcc/experiment_main.cpp compiled by nvcc (ctest compares the output with the g++ build's).
#include "experiment_main.cpp"
