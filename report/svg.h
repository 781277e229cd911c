// Dependency-free SVG chart writer used by `dmap report`: stacked, grouped and horizontal bar
// charts and line charts, written as standalone SVG 1.1 text (800x450 px) to embed in Markdown.
//
// Example:
//   StackedBarChart c;
//   c.title = "Decode time, Llama-3-8B";  c.y_label = "ms per token";
//   c.categories = {"sequential", "balanced"};
//   c.series = {{"compute", "", {10.0, 9.5}}, {"transfer", "", {4.0, 1.2}}};
//   c.bar_notes = {"", "1.4x"};
//   std::ofstream("decode.svg") << render_svg(c);   // ![decode](decode.svg)
#pragma once

#include <string>
#include <vector>

namespace dmap::report {

// One stacked segment (or one bar of a group) per category.
struct Series {
  std::string name;            // legend text
  std::string color;           // any SVG colour ("#0072B2", "red"); "" = next palette colour
  std::vector<double> values;  // one per category, in the chart's unit; must match categories.size()
};

// Bars, one per category. Values are clamped: negative, NaN and inf draw as 0 (no segment).
struct StackedBarChart {
  std::string title;
  std::string y_label;                  // value axis label, with the unit, e.g. "ms per token"
  std::vector<std::string> categories;  // bar labels; long ones are rotated (vertical) or sit left
  std::vector<Series> series;           // stacked bottom-up in this order (or side by side when grouped)
  std::vector<std::string> bar_notes;   // optional text above (right of) each bar, e.g. "OOM"; "" = none
  bool horizontal = false;              // bars grow rightwards, categories listed top-down
};

// y = NaN (or inf, or <= 0 on a log axis) means "no value here": the line breaks there.
struct LinePoint {
  double x;
  double y;
};

struct LineSeries {
  std::string name;
  std::string color;              // "" = palette colour by series index
  std::vector<LinePoint> points;  // drawn in the given order; points with non-finite x are skipped
  bool dashed = false;
};

// A labelled vertical line, e.g. "GPU memory full" at x = 48.
struct VerticalMarker {
  double x;
  std::string label;
};

// x and y axes are linear with 1-2-5 ticks; the linear y axis always includes 0.
struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<LineSeries> series;
  std::vector<VerticalMarker> markers;
  bool log_y = false;  // ticks at powers of ten; non-positive y values become gaps
};

// Renders a chart as one standalone SVG document (no XML declaration; UTF-8). Same input gives
// the same bytes. Throws InternalError (DMAP_CHECK) when a series' values.size() differs from
// categories.size() — a caller bug, not user input.
std::string render_svg(const StackedBarChart& chart);
std::string render_svg(const LineChart& chart);
// Same data as a stacked chart, but the series of a category are drawn side by side.
std::string render_grouped_svg(const StackedBarChart& chart);

// --- building blocks, exposed for tests and for callers that print their own axes ---

// Ticks with a 1-2-5 step that cover [lo, hi] (first <= lo, last >= hi), aiming at about
// `target` intervals. lo == hi is widened. Requires finite lo <= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// Powers of ten covering [lo, hi], lo > 0: (0.003, 250) -> 0.001, 0.01, ..., 1000.
std::vector<double> log_ticks(double lo, double hi);
// A tick label with as many decimals as `step` needs and no trailing zeros: (0.015, 0.005) ->
// "0.015", (0.01, 0.005) -> "0.01"; magnitudes >= 1e6 or < 1e-4 as "2e6", "1e-5".
std::string format_tick(double value, double step);
// Escapes &, <, >, " and ' for XML text and attributes; drops control characters XML forbids.
std::string xml_escape(const std::string& text);

}  // namespace dmap::report
