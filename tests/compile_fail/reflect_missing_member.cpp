// A reflection list that leaves out a member of its struct is refused (the
// option would silently be missing from JSON, the command line and the
// metrics file's config record).
// expect: RLHF_REFLECT(demo::opts, ...): the list misses a member of demo::opts
#include <rlhf/config/fields.hpp>
namespace demo {
struct opts {
  double a = 1;
  int b = 2;
};
}  // namespace demo
RLHF_REFLECT(demo::opts, a);
