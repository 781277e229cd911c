// The noise floor (core/noise_floor.h) on synthetic rounds: no spread gives no floor, a known
// spread gives the floor the order statistics of a median of three predict, more rounds lower it,
// and rows without a spread of their own take the pooled one.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "core/noise_floor.h"

using namespace dmap;

namespace {

// `rows` rows of `n` rounds each: a typical time per row times exp(N(0, sigma)).
std::vector<std::vector<double>> lognormal_rounds(int rows, int n, double sigma, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0.0, sigma);
  std::vector<std::vector<double>> out;
  for (int r = 0; r < rows; ++r) {
    const double typical = 0.02 + 0.01 * r;  // rows of different sizes: only ratios count
    std::vector<double> row;
    for (int k = 0; k < n; ++k) row.push_back(typical * std::exp(z(rng)));
    out.push_back(row);
  }
  return out;
}

}  // namespace

TEST_CASE("identical rounds have no noise floor", "[unit][noise]") {
  const NoiseFloor f = noise_floor({{0.05, 0.05, 0.05}, {0.1, 0.1, 0.1}, {0.2, 0.2}});
  CHECK(f.rows == 3);
  CHECK(f.spread_rows == 3);
  CHECK(f.sigma == Approx(0).margin(1e-12));
  CHECK(f.median_abs == Approx(0).margin(1e-12));
  CHECK(f.p90_abs == Approx(0).margin(1e-12));
  CHECK(f.chance(0.05, 0.10) == 1.0);
}

TEST_CASE("a known spread gives the floor of a median of three", "[unit][noise]") {
  // sigma 10 %: the median of three normal draws has a spread of about 0.67 sigma, so a perfect
  // prediction is off by |N(0, 6.7 %)|: median about 4.5 %, 90th percentile about 11 %.
  const NoiseFloor f = noise_floor(lognormal_rounds(200, 3, 0.10, 7));
  CHECK(f.sigma == Approx(0.10).epsilon(0.1));
  CHECK(f.median_abs == Approx(0.045).epsilon(0.2));
  CHECK(f.p90_abs == Approx(0.11).epsilon(0.2));
  // Such a machine rarely lets even a perfect prediction meet "median <= 5 %, p90 <= 10 %"
  // (200 rows: the p90 is near 11 % in every draw).
  CHECK(f.chance(0.05, 0.10) < 0.2);
  CHECK(f.chance(1.0, 1.0) == 1.0);
}

TEST_CASE("the floor scales with the spread and falls with more rounds", "[unit][noise]") {
  const NoiseFloor quiet = noise_floor(lognormal_rounds(18, 3, 0.02, 3));
  const NoiseFloor drifting = noise_floor(lognormal_rounds(18, 3, 0.10, 3));
  CHECK(drifting.sigma / quiet.sigma == Approx(5.0).epsilon(0.05));  // the same normal draws, scaled
  CHECK(drifting.median_abs > 3 * quiet.median_abs);
  CHECK(quiet.chance(0.05, 0.10) > 0.95);
  const NoiseFloor nine = noise_floor(lognormal_rounds(18, 9, 0.10, 3));
  CHECK(nine.sigma == Approx(0.10).epsilon(0.25));
  CHECK(nine.median_abs < drifting.median_abs);
  CHECK(nine.p90_abs < drifting.p90_abs);
}

TEST_CASE("rows without a spread of their own take the pooled one", "[unit][noise]") {
  auto rounds = lognormal_rounds(10, 3, 0.08, 11);
  rounds.push_back({0.5});              // one round: drawn like the others, adds no deviation
  rounds.push_back({0.0, -1.0, 0.25});  // non-positive rounds ignored: one round left
  const NoiseFloor f = noise_floor(rounds);
  CHECK(f.rows == 12);
  CHECK(f.spread_rows == 10);
  CHECK(f.sigma > 0.04);
  CHECK(f.median_abs > 0);
  // Nothing to pool: no floor, and no claim about the targets.
  const NoiseFloor none = noise_floor({{0.5}, {0.25}});
  CHECK(none.sigma == 0);
  CHECK(none.median_abs == 0);
  CHECK(none.draw_median_abs.empty());
  CHECK(none.chance(0.05, 0.10) == 0);
}

TEST_CASE("the floor is reproducible for a seed", "[unit][noise]") {
  const auto rounds = lognormal_rounds(16, 3, 0.1, 5);
  const NoiseFloor a = noise_floor(rounds, 500, 42), b = noise_floor(rounds, 500, 42);
  CHECK(a.median_abs == b.median_abs);
  CHECK(a.p90_abs == b.p90_abs);
  CHECK(a.draw_median_abs.size() == 500);
}
