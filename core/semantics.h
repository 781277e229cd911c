// The execution semantics of offloaded modules (DESIGN.md, "Execution semantics"), one vocabulary
// for the simulator and the executor:
//   accelerate  offloaded modules compute on the map's first GPU, their weights copied per leaf,
//               pageable, one blocking copy per tensor (transformers + accelerate today)
//   prefetch    the same, pinned, the next unit copied while this one computes
//   in-place    offloaded modules compute where they are mapped (llama.cpp's -ngl split)
//   cpu         everything on the CPU (the executor's CPU backend; a simulator row)
//   routed-prefetch  dmap's proposal, simulated only (no runtime does it yet): prefetch, except
//               that a mixture-of-experts layer's routed experts are copied after its router
//               runs, only the experts it picked (one copy per expert and tensor), not overlapped
//
// Example:
//   Semantics s = parse_semantics("in-place").value();   // nullopt for an unknown name
//   std::cout << semantics_name(s);                      // "in-place"
#pragma once

#include <optional>
#include <string>

namespace dmap {

enum class Semantics { kAccelerate, kPrefetch, kInPlace, kCpu, kRoutedPrefetch };
// prefetch or routed-prefetch: offloaded weights copied from pinned memory on a copy stream.
bool is_prefetching(Semantics s);
std::string semantics_name(Semantics s);
// "accelerate", "prefetch", "in-place" (also "in_place", "inplace"), "cpu", "routed-prefetch".
std::optional<Semantics> parse_semantics(const std::string& s);

}  // namespace dmap
