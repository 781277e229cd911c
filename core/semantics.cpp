// Execution semantics' names (see semantics.h).
#include "core/semantics.h"

namespace dmap {

std::string semantics_name(Semantics s) {
  switch (s) {
    case Semantics::kAccelerate: return "accelerate";
    case Semantics::kPrefetch: return "prefetch";
    case Semantics::kInPlace: return "in-place";
    case Semantics::kCpu: return "cpu";
    case Semantics::kRoutedPrefetch: return "routed-prefetch";
  }
  return "?";
}

std::optional<Semantics> parse_semantics(const std::string& s) {
  if (s == "accelerate") return Semantics::kAccelerate;
  if (s == "prefetch") return Semantics::kPrefetch;
  if (s == "in-place" || s == "in_place" || s == "inplace") return Semantics::kInPlace;
  if (s == "cpu") return Semantics::kCpu;
  if (s == "routed-prefetch" || s == "routed_prefetch") return Semantics::kRoutedPrefetch;
  return std::nullopt;
}

bool is_prefetching(Semantics s) { return s == Semantics::kPrefetch || s == Semantics::kRoutedPrefetch; }

}  // namespace dmap
