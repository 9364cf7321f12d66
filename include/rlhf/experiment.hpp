// rlhf++ — the experiment layer: experiments as types, make_trainer, sweeps,
// JSON and command-line configuration (docs/configuration.md). Needs
// Boost.Hana (CMake target rlhf::experiment); <rlhf/rlhf.hpp> does not.
#pragma once

#include "config/experiment.hpp"
#include "rlhf.hpp"
