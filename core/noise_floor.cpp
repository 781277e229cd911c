// The noise floor of a validation (see noise_floor.h).
#include "core/noise_floor.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/stats.h"

namespace dmap {

double NoiseFloor::chance(double median_limit, double p90_limit) const {
  if (draw_median_abs.empty()) return 0;
  int met = 0;
  for (size_t i = 0; i < draw_median_abs.size(); ++i) {
    if (draw_median_abs[i] <= median_limit && draw_p90_abs[i] <= p90_limit) ++met;
  }
  return static_cast<double>(met) / static_cast<double>(draw_median_abs.size());
}

NoiseFloor noise_floor(const std::vector<std::vector<double>>& rounds, int draws, uint64_t seed) {
  NoiseFloor f;
  std::vector<double> deviations;  // log(round) less its row's mean, small-sample corrected
  std::vector<size_t> counts;      // rounds per row (at least one)
  double squares = 0;
  int freedom = 0;
  for (const auto& row : rounds) {
    std::vector<double> logs;
    for (double x : row) {
      if (x > 0) logs.push_back(std::log(x));
    }
    counts.push_back(std::max<size_t>(1, logs.size()));
    if (logs.size() < 2) continue;
    ++f.spread_rows;
    double mean = 0;
    for (double l : logs) mean += l;
    mean /= static_cast<double>(logs.size());
    const double n = static_cast<double>(logs.size());
    for (double l : logs) {
      squares += (l - mean) * (l - mean);
      deviations.push_back((l - mean) * std::sqrt(n / (n - 1)));
    }
    freedom += static_cast<int>(logs.size()) - 1;
  }
  f.rows = static_cast<int>(rounds.size());
  if (deviations.empty() || draws <= 0) return f;
  f.sigma = std::sqrt(squares / freedom);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, deviations.size() - 1);
  std::vector<double> errors(counts.size()), drawn;
  for (int d = 0; d < draws; ++d) {
    for (size_t r = 0; r < counts.size(); ++r) {
      drawn.clear();
      for (size_t k = 0; k < counts[r]; ++k) drawn.push_back(deviations[pick(rng)]);
      // The row measured at exp(median) times its typical time, predicted at its typical time.
      errors[r] = std::fabs(std::exp(-median(drawn)) - 1);
    }
    f.draw_median_abs.push_back(median(errors));
    f.draw_p90_abs.push_back(percentile(errors, 0.9));
  }
  f.median_abs = median(f.draw_median_abs);
  f.p90_abs = median(f.draw_p90_abs);
  return f;
}

}  // namespace dmap
