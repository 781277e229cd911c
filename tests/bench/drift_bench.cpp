// How well the reference probe tracks whole-model decode on a drifting machine.
//
// Alternates, `rounds` times: reference probe, a CPU-only whole-model run of `model` (dtype),
// reference probe. Prints one line per round (probe before / after, decode ms/token) and then
// the spread of decode alone and of decode divided by the probe (the mean of the two around it),
// and their Pearson correlation. A probe that tracks the machine narrows the spread.
//
//   build/tests/bench/drift_bench tinyllama_1b float32 12 [threads]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/scenario.h"
#include "profile/profile.h"

using namespace dmap;

namespace {
double spread(std::vector<double> v) {
  double lo = v[0], hi = v[0];
  for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
  return hi / lo;
}
double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "probe") {  // drift_bench probe READS CALLS: jitter alone
    const int reads = std::atoi(argv[2]), calls = std::atoi(argv[3]);
    std::vector<double> v;
    for (int i = 0; i < calls; ++i) v.push_back(profile::reference_probe_ms(2, reads));
    for (double x : v) std::printf("%.3f ", x);
    std::printf("\nprobe of %d reads, %d calls back to back: spread %.3f\n", reads, calls, spread(v));
    return 0;
  }
  if (argc < 4) {
    std::fprintf(stderr, "usage: drift_bench MODEL DTYPE ROUNDS [THREADS]\n");
    return 2;
  }
  const ModelSpec spec = resolve_model(argv[1], "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const DType d = parse_dtype(argv[2]).value();
  const int rounds = std::atoi(argv[3]);
  profile::RunSettings rs;
  rs.threads = argc > 4 ? std::atoi(argv[4]) : 2;
  rs.new_tokens = 12;
  const DeviceMap cpu = profile::layers_on_disk_map(spec, 0);
  std::vector<double> dec, ratio_dec, probe;
  std::printf("round probe_before_ms probe_after_ms decode_ms\n");
  for (int r = 0; r < rounds; ++r) {
    const double p0 = profile::reference_probe_ms(rs.threads);
    const profile::PlacementRun run = profile::run_placement(spec, d, cpu, rs);
    const double p1 = profile::reference_probe_ms(rs.threads);
    std::printf("%d %.3f %.3f %.2f\n", r, p0, p1, run.decode_token_s * 1e3);
    std::fflush(stdout);
    dec.push_back(run.decode_token_s * 1e3);
    probe.push_back((p0 + p1) / 2);
    ratio_dec.push_back(run.decode_token_s * 1e3 / ((p0 + p1) / 2));
  }
  std::printf("decode spread (max/min) %.3f; decode/probe spread %.3f; probe spread %.3f; r(decode, probe) %.2f\n",
              spread(dec), spread(ratio_dec), spread(probe), pearson(dec, probe));
  return 0;
}
