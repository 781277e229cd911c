// Order statistics of measured samples (times, errors): the median and percentiles every
// report quotes.
#pragma once

#include <vector>

namespace dmap {

// 0 for no samples; the mean of the middle two for an even count.
double median(std::vector<double> v);
// q in [0, 1], linear interpolation between order statistics; 0 for no samples.
double percentile(std::vector<double> v, double q);

}  // namespace dmap
