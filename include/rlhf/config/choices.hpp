// rlhf++ — the structural choices of a run, as tag objects: now
// core/choices.hpp (the vocabulary sits below every layer that names it);
// this header is kept for existing includes.
#pragma once

#include "../core/choices.hpp"
