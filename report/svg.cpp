// SVG chart rendering: page layout (title, legend, plot area), 1-2-5 axis ticks, bars, lines.
// Pure string building with fixed-precision numbers, so the same chart gives the same bytes;
// text widths are estimated (no font metrics), which is enough to place labels and legends.
#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace dmap::report {

namespace {

constexpr double kWidth = 800;
constexpr double kHeight = 450;
constexpr double kCharW = 6.6;         // estimated advance of one 12px sans-serif character
constexpr double kBig = 1e300;         // larger magnitudes count as "no value" (keeps ranges finite)
constexpr size_t kMaxLabelChars = 30;  // category labels are cut to this many characters
constexpr double kRotate = 35;         // degrees; long vertical-bar labels are turned by this much
// Okabe-Ito, reordered so the first colours contrast best on white (yellow comes late).
constexpr const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                    "#56B4E9", "#CC79A7", "#F0E442", "#000000"};

// Coordinates: one decimal, never "-0.0".
std::string num(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  std::string s = buf;
  return s == "-0.0" ? "0.0" : s;
}

size_t utf8_len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Cuts `s` to at most `max_chars` characters (ending in an ellipsis), on a UTF-8 boundary.
std::string clip(const std::string& s, size_t max_chars) {
  if (utf8_len(s) <= max_chars) return s;
  size_t i = 0, n = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    if (n + 1 == max_chars) break;
    ++n;
  }
  return s.substr(0, i) + "\xE2\x80\xA6";
}

std::string color_of(const std::string& given, size_t index) {
  return given.empty() ? kPalette[index % std::size(kPalette)] : given;
}

bool usable(double v) { return std::isfinite(v) && std::abs(v) <= kBig; }

// Bar values: negative, NaN, inf draw as 0.
double bar_value(double v) { return usable(v) && v > 0 ? v : 0.0; }

struct Plot {
  double left = 0, top = 0, right = 0, bottom = 0;
};

// A value axis: its ticks, their labels and the pixels of the first and last tick.
struct Axis {
  std::vector<double> ticks;
  std::vector<std::string> labels;
  bool log = false;
  double p0 = 0, p1 = 1;

  double px(double v) const {
    auto f = [this](double x) { return log ? std::log10(x) : x; };
    const double a = f(ticks.front()), b = f(ticks.back());
    return p0 + (f(v) - a) / (b - a) * (p1 - p0);
  }
  size_t label_chars() const {
    size_t n = 0;
    for (const auto& l : labels) n = std::max(n, utf8_len(l));
    return n;
  }
};

Axis make_axis(std::vector<double> ticks, bool log) {
  DMAP_CHECK(ticks.size() >= 2, "an axis needs two ticks");
  Axis a;
  a.log = log;
  for (double t : ticks) a.labels.push_back(format_tick(t, log ? t : ticks[1] - ticks[0]));
  a.ticks = std::move(ticks);
  return a;
}

class Writer {
 public:
  explicit Writer(const std::string& title) {
    out_ =
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"800\" height=\"450\" "
        "viewBox=\"0 0 800 450\" font-family=\"sans-serif\" font-size=\"12\">\n";
    out_.append("<title>").append(xml_escape(title)).append("</title>\n");
    out_ += "<rect width=\"800\" height=\"450\" fill=\"#ffffff\"/>\n";
    if (!title.empty())
      text(kWidth / 2, 24, clip(title, 90), "middle", "title", "font-size=\"16\" font-weight=\"bold\"");
  }
  // `extra` is trusted attribute text written by this file, never user text.
  void text(double x, double y, const std::string& s, const char* anchor, const char* cls,
            const std::string& extra = "") {
    // Appends piece by piece: `"literal" + std::string&&` trips GCC 12's -Wrestrict.
    out_.append("<text class=\"").append(cls).append("\" x=\"").append(num(x)).append("\" y=\"").append(num(y));
    out_.append("\" text-anchor=\"").append(anchor).append("\"");
    if (!extra.empty()) out_.append(" ").append(extra);
    out_.append(">").append(xml_escape(s)).append("</text>\n");
  }
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, const std::string& extra = "") {
    out_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) +
            "\" stroke=\"" + xml_escape(stroke) + "\"";
    if (!extra.empty()) out_.append(" ").append(extra);
    out_ += "/>\n";
  }
  void bar(double x, double y, double w, double h, const std::string& fill, const std::string& tip) {
    out_ += "<rect class=\"bar\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" +
            num(h) + "\" fill=\"" + xml_escape(fill) + "\"><title>" + xml_escape(tip) + "</title></rect>\n";
  }
  std::string& raw() { return out_; }
  std::string finish() { return std::move(out_) + "</svg>\n"; }

 private:
  std::string out_;
};

struct LegendItem {
  std::string name, color;
  bool line = false, dashed = false;
};

// Flows legend entries left to right from x0, wrapping before the right edge. Draws them when
// `w` is given; returns the y below the legend either way (y0 when there is nothing to show).
double legend(Writer* w, const std::vector<LegendItem>& items, double x0, double y0) {
  double x = x0, y = y0 + 12;  // y = text baseline of the current row
  bool any = false;
  for (const auto& it : items) {
    const std::string name = clip(it.name, 40);
    const double width = 18 + utf8_len(name) * kCharW + 14;
    if (any && x + width > kWidth - 10) x = x0, y += 18;
    any = true;
    if (w != nullptr) {
      if (it.line) {
        w->line(x, y - 4, x + 14, y - 4, it.color,
                std::string("stroke-width=\"2\"") + (it.dashed ? " stroke-dasharray=\"4 3\"" : ""));
      } else {
        w->raw() += "<rect x=\"" + num(x) + "\" y=\"" + num(y - 10) + "\" width=\"12\" height=\"12\" fill=\"" +
                    xml_escape(it.color) + "\"/>\n";
      }
      w->text(x + 18, y, name, "start", "legend");
    }
    x += width;
  }
  return any ? y + 8 : y0;
}

// Grid lines and tick labels of a value axis running up the left side (vertical) or along
// the bottom (horizontal) of the plot.
void draw_value_axis(Writer& w, const Plot& p, const Axis& a, bool vertical) {
  for (size_t i = 0; i < a.ticks.size(); ++i) {
    const double at = a.px(a.ticks[i]);
    if (vertical) {
      w.line(p.left, at, p.right, at, "#e0e0e0");
      w.text(p.left - 6, at + 4, a.labels[i], "end", "tick");
    } else {
      w.line(at, p.top, at, p.bottom, "#e0e0e0");
      w.text(at, p.bottom + 16, a.labels[i], "middle", "tick");
    }
  }
}

void draw_frame(Writer& w, const Plot& p) {
  w.line(p.left, p.bottom, p.right, p.bottom, "#333333");
  w.line(p.left, p.top, p.left, p.bottom, "#333333");
}

void draw_y_label(Writer& w, const Plot& p, const std::string& label) {
  const double mid = (p.top + p.bottom) / 2;
  const size_t room = static_cast<size_t>(std::max(5.0, (p.bottom - p.top) / kCharW));
  w.text(16, mid, clip(label, room), "middle", "axis-label", "transform=\"rotate(-90 16 " + num(mid) + ")\"");
}

std::string render_bars(const StackedBarChart& c, bool stacked) {
  const size_t nc = c.categories.size(), ns = c.series.size();
  for (const auto& s : c.series) {
    DMAP_CHECK(s.values.size() == nc, "series '" + s.name + "' has " + std::to_string(s.values.size()) +
                                          " values for " + std::to_string(nc) + " categories");
  }
  auto value = [&](size_t s, size_t k) { return bar_value(c.series[s].values[k]); };
  auto note = [&](size_t k) { return k < c.bar_notes.size() ? clip(c.bar_notes[k], 20) : std::string(); };

  // 1. value range: the tallest stack (stacked) or the tallest single bar (grouped), from 0.
  double vmax = 0;
  for (size_t k = 0; k < nc; ++k) {
    double total = 0;
    for (size_t s = 0; s < ns; ++s) total = stacked ? total + value(s, k) : std::max(total, value(s, k));
    vmax = std::max(vmax, total);
  }
  Axis axis = make_axis(nice_ticks(0, vmax), false);

  // 2. layout: value-axis labels, category labels, legend, notes decide the margins.
  std::vector<std::string> cats;
  size_t cat_chars = 0, note_chars = 0;
  for (size_t k = 0; k < nc; ++k) {
    cats.push_back(clip(c.categories[k], kMaxLabelChars));
    cat_chars = std::max(cat_chars, utf8_len(cats.back()));
    note_chars = std::max(note_chars, utf8_len(note(k)));
  }
  std::vector<LegendItem> items;
  for (size_t s = 0; s < ns; ++s) items.push_back({c.series[s].name, color_of(c.series[s].color, s)});
  Plot p;
  p.right = kWidth - 20;
  bool rotate = false;
  if (c.horizontal) {
    p.left = 20 + cat_chars * kCharW;
    p.right -= note_chars > 0 ? note_chars * kCharW + 8 : 0;
    p.bottom = kHeight - 44;
  } else {
    p.left = 34 + axis.label_chars() * kCharW;
    rotate = cat_chars * kCharW > (p.right - p.left) / std::max<size_t>(nc, 1) - 6;
    const double rad = kRotate * 3.14159265358979 / 180;
    p.bottom = kHeight - (rotate ? 24 + cat_chars * kCharW * std::sin(rad) : 24);
    if (rotate) {  // the first label hangs left of its bar's centre: widen the margin to fit it
      const double need = utf8_len(cats[0]) * kCharW * std::cos(rad) + 6, half = 0.5 / nc;
      p.left = std::max(p.left, (need - p.right * half) / (1 - half));
    }
  }
  p.top = std::min(kHeight / 2, legend(nullptr, items, p.left, 36) + (note_chars > 0 && !c.horizontal ? 18 : 10));

  // 3. axes and grid.
  Writer w(c.title);
  legend(&w, items, p.left, 36);
  axis.p0 = c.horizontal ? p.left : p.bottom;
  axis.p1 = c.horizontal ? p.right : p.top;
  draw_value_axis(w, p, axis, !c.horizontal);
  if (nc == 0) w.text((p.left + p.right) / 2, (p.top + p.bottom) / 2, "no data", "middle", "empty");

  // 4. bars: one slot per category; stacked segments share the slot's centre band, grouped
  //    bars split 80% of the slot evenly. The note goes past the bar's far end.
  const double span = c.horizontal ? p.bottom - p.top : p.right - p.left;
  const double slot = span / std::max<size_t>(nc, 1);
  for (size_t k = 0; k < nc; ++k) {
    const double centre = (c.horizontal ? p.top : p.left) + slot * (k + 0.5);
    double cum = 0, end = axis.p0;  // running stack total; pixel of the bar's far end
    for (size_t s = 0; s < ns; ++s) {
      const double v = value(s, k);
      const double band = stacked ? slot * 0.6 : slot * 0.8 / ns;
      const double lo = stacked ? cum : 0, hi = lo + v;
      cum = hi;
      if (v <= 0) continue;
      const double a = axis.px(lo), b = axis.px(hi);  // pixels along the value axis
      const double side = stacked ? centre - band / 2 : centre - slot * 0.4 + band * s + band * 0.05;
      const double thick = stacked ? band : band * 0.9;
      char tip_value[48];
      std::snprintf(tip_value, sizeof tip_value, "%.4g", v);
      const std::string tip = c.series[s].name + " / " + c.categories[k] + ": " + tip_value;
      const std::string& fill = items[s].color;
      if (c.horizontal) {
        w.bar(a, side, b - a, thick, fill, tip);
        end = std::max(end, b);
      } else {
        w.bar(side, b, thick, a - b, fill, tip);
        end = std::min(end, b);
      }
    }
    const std::string n = note(k);
    if (!n.empty()) {
      if (c.horizontal)
        w.text(end + 5, centre + 4, n, "start", "note");
      else
        w.text(centre, end - 5, n, "middle", "note");
    }
    if (c.horizontal) {
      w.text(p.left - 8, centre + 4, cats[k], "end", "category");
    } else if (rotate) {
      const double y = p.bottom + 14;
      w.text(centre, y, cats[k], "end", "category",
             "transform=\"rotate(-" + num(kRotate) + " " + num(centre) + " " + num(y) + ")\"");
    } else {
      w.text(centre, p.bottom + 16, cats[k], "middle", "category");
    }
  }

  // 5. frame and the value-axis label.
  draw_frame(w, p);
  if (c.horizontal)
    w.text((p.left + p.right) / 2, p.bottom + 36, clip(c.y_label, 100), "middle", "axis-label");
  else
    draw_y_label(w, p, c.y_label);
  return w.finish();
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  DMAP_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "nice_ticks needs a finite range");
  if (hi == lo) {
    if (lo == 0)
      hi = 1;
    else
      lo -= std::abs(lo) / 2, hi += std::abs(hi) / 2;
  }
  // step 1: the smallest 1-2-5 step that makes at most `target` intervals.
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag * 10;
  for (double m : {1.0, 2.0, 5.0}) {
    if (mag * m >= raw * (1 - 1e-9)) {
      step = mag * m;
      break;
    }
  }
  // step 2: whole multiples of the step, widened outwards to cover [lo, hi].
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  std::vector<double> ticks;
  for (double k = first; k <= last; ++k) ticks.push_back(k == 0 ? 0.0 : k * step);
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  DMAP_CHECK(lo > 0 && lo <= hi && std::isfinite(hi), "log_ticks needs 0 < lo <= hi");
  int k0 = static_cast<int>(std::floor(std::log10(lo)));
  int k1 = static_cast<int>(std::ceil(std::log10(hi)));
  if (std::pow(10.0, k0 + 1) <= lo) ++k0;  // guard log10 rounding
  if (std::pow(10.0, k1 - 1) >= hi) --k1;
  if (k1 <= k0) k1 = k0 + 1;
  const int stride = std::max(1, (k1 - k0 + 9) / 10);  // at most ~10 labelled decades
  std::vector<double> ticks;
  for (int k = k0; k < k1 + stride; k += stride) ticks.push_back(std::pow(10.0, k));
  return ticks;
}

std::string format_tick(double value, double step) {
  if (value == 0 || !std::isfinite(value)) return "0";
  char buf[64];
  const double a = std::abs(value);
  if (a >= 1e6 || a < 1e-4) {  // "2.50e+06" -> "2.5e6"
    std::snprintf(buf, sizeof buf, "%.2e", value);
    std::string s = buf;
    const size_t e = s.find('e');
    std::string mant = s.substr(0, e);
    while (mant.back() == '0') mant.pop_back();
    if (mant.back() == '.') mant.pop_back();
    return mant + "e" + std::to_string(std::atoi(s.c_str() + e + 1));
  }
  int decimals = 6;
  if (step > 0 && std::isfinite(step))
    decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 10);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(ch) >= 0x20 || ch == '\t' || ch == '\n' || ch == '\r') out += ch;
    }
  }
  return out;
}

std::string render_svg(const StackedBarChart& chart) { return render_bars(chart, true); }

std::string render_grouped_svg(const StackedBarChart& chart) { return render_bars(chart, false); }

std::string render_svg(const LineChart& c) {
  // 1. ranges over the drawable points (and the markers, so they stay inside the plot).
  auto valid = [&](const LinePoint& pt) { return usable(pt.x) && usable(pt.y) && (!c.log_y || pt.y > 0); };
  double xmin = 0, xmax = 0, ymin = 0, ymax = 0;
  bool any_x = false, any_y = false;
  auto take_x = [&](double x) {
    xmin = any_x ? std::min(xmin, x) : x, xmax = any_x ? std::max(xmax, x) : x;
    any_x = true;
  };
  for (const auto& s : c.series) {
    for (const auto& pt : s.points) {
      if (!valid(pt)) continue;
      take_x(pt.x);
      ymin = any_y ? std::min(ymin, pt.y) : pt.y, ymax = any_y ? std::max(ymax, pt.y) : pt.y;
      any_y = true;
    }
  }
  for (const auto& m : c.markers) {
    if (usable(m.x)) take_x(m.x);
  }
  Axis xa = make_axis(any_x ? nice_ticks(xmin, xmax) : nice_ticks(0, 1), false);
  Axis ya = c.log_y ? make_axis(any_y ? log_ticks(ymin, ymax) : log_ticks(1, 10), true)
                    : make_axis(nice_ticks(std::min(0.0, ymin), std::max(0.0, ymax)), false);

  // 2. layout and axes.
  std::vector<LegendItem> items;
  for (size_t s = 0; s < c.series.size(); ++s) {
    items.push_back({c.series[s].name, color_of(c.series[s].color, s), true, c.series[s].dashed});
  }
  Plot p;
  p.left = 34 + ya.label_chars() * kCharW;
  p.right = kWidth - 24;
  p.bottom = kHeight - 44;
  p.top = std::min(kHeight / 2, legend(nullptr, items, p.left, 36) + 10);
  xa.p0 = p.left, xa.p1 = p.right;
  ya.p0 = p.bottom, ya.p1 = p.top;
  Writer w(c.title);
  legend(&w, items, p.left, 36);
  draw_value_axis(w, p, ya, true);
  for (size_t i = 0; i < xa.ticks.size(); ++i) {
    const double x = xa.px(xa.ticks[i]);
    w.line(x, p.bottom, x, p.bottom + 4, "#333333");
    w.text(x, p.bottom + 16, xa.labels[i], "middle", "tick");
  }
  if (!any_y) w.text((p.left + p.right) / 2, (p.top + p.bottom) / 2, "no data", "middle", "empty");

  // 3. markers: dashed grey verticals, label inside the plot (flipped left near the right edge).
  for (const auto& m : c.markers) {
    if (!usable(m.x)) continue;
    const double x = xa.px(m.x);
    w.line(x, p.top, x, p.bottom, "#666666", "class=\"marker\" stroke-dasharray=\"5 4\"");
    const bool flip = x > (p.left + p.right) / 2 + (p.right - p.left) / 4;
    w.text(flip ? x - 4 : x + 4, p.top + 12, clip(m.label, 40), flip ? "end" : "start", "marker-label",
           "font-size=\"11\" fill=\"#444444\"");
  }

  // 4. series: one <path> per run of valid points (an invalid point ends the run), a dot per point.
  for (size_t s = 0; s < c.series.size(); ++s) {
    const LineSeries& ls = c.series[s];
    const std::string& color = items[s].color;
    const std::string stroke = "fill=\"none\" stroke=\"" + xml_escape(color) + "\" stroke-width=\"2\"" +
                               (ls.dashed ? " stroke-dasharray=\"6 4\"" : "");
    std::string d, dots;
    size_t run = 0;
    auto flush = [&]() {
      if (run >= 2) w.raw() += "<path class=\"line\" d=\"" + d + "\" " + stroke + "/>\n";
      d.clear();
      run = 0;
    };
    for (const auto& pt : ls.points) {
      if (!valid(pt)) {
        flush();
        continue;
      }
      const std::string x = num(xa.px(pt.x)), y = num(ya.px(pt.y));
      d += (run == 0 ? "M" : " L") + x + " " + y;
      ++run;
      dots +=
          "<circle class=\"point\" cx=\"" + x + "\" cy=\"" + y + "\" r=\"2.5\" fill=\"" + xml_escape(color) + "\"/>\n";
    }
    flush();
    w.raw() += dots;
  }

  // 5. frame and axis labels.
  draw_frame(w, p);
  w.text((p.left + p.right) / 2, p.bottom + 36, clip(c.x_label, 100), "middle", "axis-label");
  draw_y_label(w, p, c.y_label);
  return w.finish();
}

}  // namespace dmap::report
