// Measurements taken with the machine as it was calibrated, and referred to calibration time.
//
// A shared VM's memory bandwidth moves by 10-45 % for minutes at a time. The calibration records
// the reference probe's time (host.reference_probe_ms: a fixed float32 matrix-vector stream) as
// it took its own runs; a later measurement (a runtime's fit, a validation row) is bracketed by
// the same probe:
//
//   before: probe, repeated a second apart (up to 10 tries) until it reads within ±kSteadyBand
//           of calibration time (the measurement goes ahead either way)
//   fn()  : the measurement
//   after : probe once more;  ratio = mean(before, after) / calibration time  (above 1: slower)
//
// A memory-bound time measured at `ratio` is referred to calibration time by dividing it by the
// ratio (at_calibration_time), as a validation's scaled error does. The runtimes' fits do this
// to their decode times and one-row products (measured on the AMD EPYC VM, 2026-12-07: a
// llama.cpp fit taken at 1.097x over-predicted every held-out row, by 3-17 %).
//
// Example:
//   ReferenceBracket b(cal.host.reference_probe_ms.value_or(0), threads);
//   LlamaProbe p = b.run([&] { return run_llama_probe(o); });
//   double decode_at_cal = at_calibration_time(p.decode(), b.ratio());
#pragma once

#include <vector>

namespace dmap::profile {

class ReferenceBracket {
 public:
  // calibration_ms <= 0: nothing is probed and ratio() is 0 (times are taken as measured).
  ReferenceBracket(double calibration_ms, int threads, int tries = 10, double pause_s = 1.0);
  template <class F>
  auto run(F&& fn) {
    open();
    auto r = fn();
    close();
    return r;
  }
  double ratio() const { return last_; }                         // the last measurement's (0: none)
  const std::vector<double>& ratios() const { return ratios_; }  // every measurement's, in order
  bool probed() const { return calibration_ms_ > 0; }

 private:
  void open();
  void close();
  double calibration_ms_;
  int threads_, tries_;
  double pause_s_;
  double before_ms_ = 0, last_ = 0;
  std::vector<double> ratios_;
};

// `seconds` measured at `ratio` (ReferenceBracket::ratio()) as it would have been at calibration
// time: seconds / ratio; unchanged when the ratio is 0 (not probed).
inline double at_calibration_time(double seconds, double ratio) { return ratio > 0 ? seconds / ratio : seconds; }

// The same for a CPU-only whole-model run of dmap's executor whose decode was bracketed by the
// probe at `ratio` of the reference time (RunSettings::before_decode / after_decode): every decode
// figure (each step, their median, each module's steps, the layer steps) divided by the ratio;
// the prefill, which the probe did not bracket, and the disk-read time (the page-cache probe's
// business) unchanged; nothing changed when the ratio is 0. The calibration refers its CPU-only
// runs to its own reference time with this (profile_cpu.cpp).
struct PlacementRun;
void refer_decode(PlacementRun& r, double ratio);

}  // namespace dmap::profile
