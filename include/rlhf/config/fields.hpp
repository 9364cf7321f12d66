// rlhf++ — RLHF_REFLECT moved to core/fields.hpp (the trainers reflect their
// options without including config/); this header forwards to it.
#pragma once

#include "../core/fields.hpp"
