// The noise floor of a validation: the error figures a perfect prediction would show, given how
// much repeated measurements of one configuration spread on this machine.
//
// A validation compares each prediction with the median of a few rounds of the real run. On a
// quiet machine the rounds agree to a percent or two and the figures measure the cost model; on a
// shared VM whose memory bandwidth drifts by tens of percent over minutes, the median of three
// rounds is itself off the configuration's typical time, and no cost model can score better than
// that. The floor says how much of a report's error is the machine's.
//
// Data flow: rounds per row --> log(round) - mean of the row's logs, x sqrt(n / (n - 1)) (rows
//            with two rounds or more) --> pooled deviations and their spread (sigma)
//            --> per draw (seeded): each row's median of as many deviations drawn with
//            replacement as it had rounds --> |exp(-median) - 1| per row (the error of a
//            prediction equal to the row's typical time) --> median and p90 over rows
//            --> their medians over the draws, and how often both stay within given limits.
//
// Example:
//   const NoiseFloor f = noise_floor({{42.7, 54.6, 42.7}, {35.5, 35.6, 37.1}});
//   f.sigma;                    // 0.11: rounds of one placement spread by 11 %
//   f.median_abs, f.p90_abs;    // what a perfect prediction would score here
//   f.chance(0.05, 0.10);       // how often it would meet "median <= 5 %, p90 <= 10 %"
//
// The rows' spreads are pooled (one sigma for the machine), so a row measured once still gets a
// median of one draw. Deviations are resampled rather than assumed normal: a drifting machine's
// spread is lopsided (slow spells, no fast ones).
#pragma once

#include <cstdint>
#include <vector>

namespace dmap {

struct NoiseFloor {
  int rows = 0;                                       // rows whose errors are figured (every row given)
  int spread_rows = 0;                                // of which rows with two rounds or more: the deviations' sample
  double sigma = 0;                                   // pooled standard deviation of log(round) within a row
  double median_abs = 0, p90_abs = 0;                 // medians over the draws
  std::vector<double> draw_median_abs, draw_p90_abs;  // per draw
  // The share of draws whose median and p90 stay within the limits (0 without draws).
  double chance(double median_limit, double p90_limit) const;
};

// `rounds`: per row, its measurements (seconds or any unit: only ratios matter; values <= 0 are
// ignored). No row with two positive rounds: sigma 0 and every figure 0.
NoiseFloor noise_floor(const std::vector<std::vector<double>>& rounds, int draws = 2000, uint64_t seed = 1);

}  // namespace dmap
