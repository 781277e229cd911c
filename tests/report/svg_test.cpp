// Unit tests of the SVG chart writer: well-formed XML, escaping, 1-2-5 ticks and their labels,
// bar geometry proportional to values, gaps in lines, determinism, legends and edge cases.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "report/svg.h"

using namespace dmap::report;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

bool known_entities(const std::string& text) {
  static const std::set<std::string> kNames = {"amp", "lt", "gt", "quot", "apos"};
  for (size_t i = text.find('&'); i != std::string::npos; i = text.find('&', i + 1)) {
    const size_t semi = text.find(';', i);
    if (semi == std::string::npos || kNames.count(text.substr(i + 1, semi - i - 1)) == 0) return false;
  }
  return true;
}

// A small XML well-formedness checker: one root element, tags balanced and nested, attributes
// quoted and unique, only the five predefined entities. Returns "" or what is wrong.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> open;
  int roots = 0;
  size_t i = 0;
  auto is_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == '.';
  };
  while (i < s.size()) {
    if (s[i] != '<') {
      const size_t j = std::min(s.find('<', i), s.size());
      const std::string text = s.substr(i, j - i);
      if (!known_entities(text)) return "bad entity in text: " + text;
      if (text.find('>') != std::string::npos) return "raw '>' in text: " + text;
      if (open.empty() && text.find_first_not_of(" \t\r\n") != std::string::npos) return "text outside the root";
      i = j;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      const size_t j = s.find('>', i);
      if (j == std::string::npos) return "unterminated end tag";
      const std::string name = s.substr(i + 2, j - i - 2);
      if (open.empty() || open.back() != name) return "mismatched </" + name + ">";
      open.pop_back();
      i = j + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && is_name(s[j])) ++j;
    const std::string name = s.substr(i + 1, j - i - 1);
    if (name.empty()) return "bad tag name at " + std::to_string(i);
    if (open.empty() && ++roots > 1) return "more than one root element";
    std::set<std::string> attrs;
    while (true) {
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return "unterminated tag <" + name;
      if (s.compare(j, 2, "/>") == 0) {
        j += 2;
        break;
      }
      if (s[j] == '>') {
        open.push_back(name);
        ++j;
        break;
      }
      const size_t a = j;
      while (j < s.size() && is_name(s[j])) ++j;
      const std::string attr = s.substr(a, j - a);
      if (attr.empty() || j + 1 >= s.size() || s[j] != '=' || (s[j + 1] != '"' && s[j + 1] != '\''))
        return "bad attribute in <" + name;
      if (!attrs.insert(attr).second) return "duplicate attribute " + attr;
      const char quote = s[j + 1];
      const size_t end = s.find(quote, j + 2);
      if (end == std::string::npos) return "unterminated attribute " + attr;
      const std::string value = s.substr(j + 2, end - j - 2);
      if (value.find('<') != std::string::npos || !known_entities(value)) return "bad attribute value " + value;
      j = end + 1;
    }
    i = j;
  }
  if (!open.empty()) return "unclosed <" + open.back() + ">";
  return roots == 1 ? "" : "no root element";
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

std::vector<std::string> texts_of_class(const std::string& svg, const std::string& cls) {
  const std::regex re("<text class=\"" + cls + "\"[^>]*>([^<]*)</text>");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

struct Rect {
  double x, y, w, h;
  std::string fill;
};

std::vector<Rect> bars(const std::string& svg) {
  const std::regex re(
      R"re(<rect class="bar" x="([-0-9.]+)" y="([-0-9.]+)" width="([-0-9.]+)" height="([-0-9.]+)" fill="([^"]*)")re");
  std::vector<Rect> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back({std::stod((*it)[1]), std::stod((*it)[2]), std::stod((*it)[3]), std::stod((*it)[4]), (*it)[5]});
  }
  return out;
}

void check_ticks(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(1e-12));
}

void check_well_formed(const std::string& svg) {
  INFO(svg);
  CHECK(xml_problem(svg) == "");
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"800\" height=\"450\" viewBox=\"0 "
                  "0 800 450\"",
                  0) == 0);
  CHECK(svg.size() > 7);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
}

StackedBarChart sample_bars() {
  StackedBarChart c;
  c.title = "Decode time";
  c.y_label = "ms per token";
  c.categories = {"sequential", "balanced", "optimal"};
  c.series = {{"compute", "", {10.0, 9.5, 9.0}}, {"transfer", "", {4.0, 1.2, 0.5}}};
  c.bar_notes = {"", "1.4x", "OOM"};
  return c;
}

LineChart sample_lines() {
  LineChart c;
  c.title = "Latency vs batch";
  c.x_label = "batch size";
  c.y_label = "ms per token";
  c.series = {{"sequential", "", {{1, 10}, {8, 12}, {32, kNaN}, {64, 30}}, false},
              {"balanced", "", {{1, 8}, {8, 9}, {32, 15}, {64, 22}}, true}};
  c.markers = {{48, "GPU memory full"}};
  return c;
}

}  // namespace

TEST_CASE("the XML checker itself rejects malformed documents", "[unit]") {
  CHECK(xml_problem("<a><b/></a>") == "");
  CHECK(xml_problem("<a x=\"1&amp;2\">t &lt; u</a>") == "");
  CHECK(xml_problem("<a><b></a></b>") != "");
  CHECK(xml_problem("<a x=1/>") != "");
  CHECK(xml_problem("<a x=\"1\" x=\"2\"/>") != "");
  CHECK(xml_problem("<a>&foo;</a>") != "");
  CHECK(xml_problem("<a>x & y</a>") != "");
  CHECK(xml_problem("<a/><b/>") != "");
  CHECK(xml_problem("<a>") != "");
}

TEST_CASE("nice_ticks uses 1-2-5 steps covering the range", "[unit]") {
  check_ticks(nice_ticks(0, 0.0137), {0, 0.005, 0.01, 0.015});
  check_ticks(nice_ticks(0, 100), {0, 20, 40, 60, 80, 100});
  check_ticks(nice_ticks(0, 7), {0, 2, 4, 6, 8});
  check_ticks(nice_ticks(0, 1234), {0, 500, 1000, 1500});
  check_ticks(nice_ticks(-3, 12), {-5, 0, 5, 10, 15});
  check_ticks(nice_ticks(0, 0), {0, 0.2, 0.4, 0.6, 0.8, 1.0});  // degenerate range widened
  check_ticks(nice_ticks(4, 4), {2, 3, 4, 5, 6});
  CHECK_THROWS_AS(nice_ticks(0, kNaN), dmap::InternalError);
}

TEST_CASE("log_ticks are powers of ten covering the range", "[unit]") {
  check_ticks(log_ticks(0.003, 250), {0.001, 0.01, 0.1, 1, 10, 100, 1000});
  check_ticks(log_ticks(10, 1000), {10, 100, 1000});
  check_ticks(log_ticks(5, 5), {1, 10});
}

TEST_CASE("format_tick prints short labels without float noise", "[unit]") {
  CHECK(format_tick(0.015, 0.005) == "0.015");
  CHECK(format_tick(0.01, 0.005) == "0.01");
  CHECK(format_tick(3 * 0.2, 0.2) == "0.6");  // 0.6000000000000001
  CHECK(format_tick(0.1 + 0.2, 0.1) == "0.3");
  CHECK(format_tick(1500, 500) == "1500");
  CHECK(format_tick(-5, 5) == "-5");
  CHECK(format_tick(0, 0.005) == "0");
  CHECK(format_tick(2500000, 500000) == "2.5e6");
  CHECK(format_tick(0.00001, 0.00001) == "1e-5");
  CHECK(format_tick(0.001, 0.001) == "0.001");
  CHECK(format_tick(1234.5678, 1000) == "1235");  // decimals follow the step, not the value
}

TEST_CASE("rendered tick labels are nice numbers", "[unit]") {
  StackedBarChart c;
  c.categories = {"a", "b"};
  c.series = {{"s", "", {0.0137, 0.004}}};
  CHECK(texts_of_class(render_svg(c), "tick") == std::vector<std::string>{"0", "0.005", "0.01", "0.015"});
  c.series[0].values = {73, 12};
  CHECK(texts_of_class(render_svg(c), "tick") == std::vector<std::string>{"0", "20", "40", "60", "80"});

  LineChart l;
  l.log_y = true;
  l.series = {{"s", "", {{1, 1}, {2, 0}, {3, -1}, {4, 10}, {5, 100}}, false}};
  const auto labels = texts_of_class(render_svg(l), "tick");
  REQUIRE(labels.size() >= 3);
  CHECK(std::vector<std::string>(labels.begin(), labels.begin() + 3) == std::vector<std::string>{"1", "10", "100"});
}

TEST_CASE("every chart kind and edge case is well-formed SVG", "[unit]") {
  StackedBarChart bars_chart = sample_bars();
  check_well_formed(render_svg(bars_chart));
  check_well_formed(render_grouped_svg(bars_chart));
  bars_chart.horizontal = true;
  check_well_formed(render_svg(bars_chart));
  check_well_formed(render_grouped_svg(bars_chart));
  check_well_formed(render_svg(sample_lines()));
  LineChart log_chart = sample_lines();
  log_chart.log_y = true;
  check_well_formed(render_svg(log_chart));

  StackedBarChart empty;
  check_well_formed(render_svg(empty));
  check_well_formed(render_grouped_svg(empty));
  CHECK(render_svg(empty).find(">no data<") != std::string::npos);
  StackedBarChart no_series;
  no_series.categories = {"only"};
  check_well_formed(render_svg(no_series));
  StackedBarChart zeros;
  zeros.categories = {"a", "b"};
  zeros.series = {{"z", "", {0, 0}}};
  check_well_formed(render_svg(zeros));
  CHECK(bars(render_svg(zeros)).empty());
  CHECK(texts_of_class(render_svg(zeros), "tick") == std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8", "1"});

  LineChart none;
  check_well_formed(render_svg(none));
  none.log_y = true;
  check_well_formed(render_svg(none));
  LineChart gaps_only;
  gaps_only.series = {{"g", "", {{1, kNaN}, {kNaN, 2}, {kInf, 3}}, false}, {"empty", "", {}, false}};
  gaps_only.markers = {{kNaN, "nowhere"}};
  check_well_formed(render_svg(gaps_only));
  CHECK(count(render_svg(gaps_only), "<path") == 0);
}

TEST_CASE("text and attributes are XML-escaped", "[unit]") {
  StackedBarChart c;
  c.title = "A & B <c> \"d\" 'e'\x01";
  c.y_label = "ms <per> token";
  c.categories = {"x&y"};
  c.series = {{"<script>", "red\" onload=\"alert(1)", {1.0}}};
  const std::string svg = render_svg(c);
  CHECK(xml_problem(svg) == "");
  CHECK(svg.find("A &amp; B &lt;c&gt; &quot;d&quot; &apos;e&apos;</text>") != std::string::npos);
  CHECK(svg.find("<c>") == std::string::npos);
  CHECK(svg.find('\x01') == std::string::npos);
  CHECK(svg.find("&lt;script&gt;") != std::string::npos);
  CHECK(svg.find("<script>") == std::string::npos);
  CHECK(svg.find("onload=\"") == std::string::npos);
  CHECK(svg.find(">x&amp;y<") != std::string::npos);
  CHECK(xml_escape("a<b>&\"'") == "a&lt;b&gt;&amp;&quot;&apos;");
}

TEST_CASE("bar heights are proportional to values", "[unit]") {
  StackedBarChart c;
  c.categories = {"a", "b", "c"};
  c.series = {{"s", "", {1, 2, 4}}};
  std::vector<Rect> r = bars(render_svg(c));
  REQUIRE(r.size() == 3);
  CHECK(r[1].h / r[0].h == Approx(2).epsilon(0.01));
  CHECK(r[2].h / r[0].h == Approx(4).epsilon(0.01));
  CHECK(r[0].y + r[0].h == Approx(r[2].y + r[2].h).margin(0.11));  // common baseline
  CHECK(r[0].x < r[1].x);

  SECTION("stacked segments sit on each other") {
    c.categories = {"a", "b"};
    c.series = {{"s1", "", {1, 4}}, {"s2", "", {3, 0}}};  // a = 1 + 3, b = 4 + 0 (no segment)
    r = bars(render_svg(c));
    REQUIRE(r.size() == 3);
    CHECK(r[1].h / r[0].h == Approx(3).epsilon(0.01));
    CHECK(r[1].y + r[1].h == Approx(r[0].y).margin(0.11));  // s2 on top of s1
    CHECK(r[0].x == r[1].x);
    CHECK(r[0].h + r[1].h == Approx(r[2].h).margin(0.21));  // both stacks total 4
    CHECK(r[0].fill != r[1].fill);
  }
  SECTION("grouped bars stand side by side on one baseline") {
    c.categories = {"a", "b"};
    c.series = {{"s1", "", {1, 4}}, {"s2", "", {3, 0}}};
    r = bars(render_grouped_svg(c));
    REQUIRE(r.size() == 3);
    CHECK(r[1].h / r[0].h == Approx(3).epsilon(0.01));
    CHECK(r[2].h / r[0].h == Approx(4).epsilon(0.01));
    CHECK(r[1].x >= r[0].x + r[0].w);  // no overlap
    CHECK(r[0].y + r[0].h == Approx(r[1].y + r[1].h).margin(0.11));
  }
  SECTION("horizontal bars grow rightwards from one edge") {
    c.horizontal = true;
    r = bars(render_svg(c));
    REQUIRE(r.size() == 3);
    CHECK(r[1].w / r[0].w == Approx(2).epsilon(0.01));
    CHECK(r[2].w / r[0].w == Approx(4).epsilon(0.01));
    CHECK(r[0].x == r[2].x);
    CHECK(r[0].y < r[1].y);  // first category on top
  }
}

TEST_CASE("negative, NaN and inf bar values draw nothing and print nothing", "[unit]") {
  StackedBarChart c;
  c.categories = {"c1", "c2", "c3", "c4"};
  c.series = {{"s", "", {-5, kNaN, kInf, 2}}};
  for (const std::string& svg : {render_svg(c), render_grouped_svg(c)}) {
    check_well_formed(svg);
    CHECK(bars(svg).size() == 1);
  }
  c.series[0].values = {1, 2};
  CHECK_THROWS_AS(render_svg(c), dmap::InternalError);  // values must match categories
}

TEST_CASE("bar notes sit above their bar; long labels are rotated and clipped", "[unit]") {
  StackedBarChart c;
  c.categories = {"short", std::string(60, 'L'), "c", "d", "e", "f"};
  c.series = {{"s", "", {1, 3, 1, 1, 1, 1}}};
  c.bar_notes = {"OOM"};  // shorter than categories: the rest have none
  const std::string svg = render_svg(c);
  check_well_formed(svg);
  const std::regex note_re(R"re(<text class="note" x="[-0-9.]+" y="([-0-9.]+)"[^>]*>OOM</text>)re");
  std::smatch m;
  REQUIRE(std::regex_search(svg, m, note_re));
  const std::vector<Rect> r = bars(svg);
  REQUIRE(r.size() == 6);
  CHECK(std::stod(m[1]) < r[0].y);
  CHECK(count(svg, "class=\"note\"") == 1);
  CHECK(count(svg, "rotate(-35.0") == 6);  // too long for a 1/6 slot: all labels turned
  const std::vector<std::string> cats = texts_of_class(svg, "category");
  REQUIRE(cats.size() == 6);
  CHECK(cats[1] == std::string(29, 'L') + "\xE2\x80\xA6");  // clipped to 30 characters
  CHECK(svg.find("<title>s / " + std::string(60, 'L') + ": 3</title>") != std::string::npos);  // tooltip keeps it

  c.categories = {"a", "b", "c", "d", "e", "f"};
  CHECK(render_svg(c).find("rotate(-35.0") == std::string::npos);
}

TEST_CASE("NaN points split a line into segments", "[unit]") {
  LineChart c;
  c.series = {{"s", "", {{1, 1}, {2, 2}, {3, kNaN}, {4, 4}, {5, 5}}, false}};
  std::string svg = render_svg(c);
  check_well_formed(svg);
  CHECK(count(svg, "<path class=\"line\"") == 2);
  CHECK(count(svg, "<circle class=\"point\"") == 4);

  c.series[0].points = {{1, 1}, {2, 2}, {3, 3}};
  CHECK(count(render_svg(c), "<path class=\"line\"") == 1);

  SECTION("non-positive values are gaps on a log axis") {
    c.log_y = true;
    c.series[0].points = {{1, 1}, {2, 0}, {3, -1}, {4, 10}, {5, 100}};
    svg = render_svg(c);
    check_well_formed(svg);
    CHECK(count(svg, "<path class=\"line\"") == 1);  // {1} alone is a dot, {10, 100} a line
    CHECK(count(svg, "<circle class=\"point\"") == 3);
  }
  SECTION("dashed series are dashed") {
    c.series[0].dashed = true;
    CHECK(render_svg(c).find("stroke-dasharray=\"6 4\"") != std::string::npos);
  }
}

TEST_CASE("markers are drawn at their x with their label", "[unit]") {
  LineChart c;
  c.series = {{"s", "", {{0, 1}, {48, 2}, {100, 3}}, false}};
  c.markers = {{48, "GPU memory full"}};
  const std::string svg = render_svg(c);
  CHECK(texts_of_class(svg, "marker-label") == std::vector<std::string>{"GPU memory full"});
  std::smatch line, dot;
  REQUIRE(std::regex_search(svg, line, std::regex(R"re(<line x1="([-0-9.]+)"[^>]*class="marker")re")));
  REQUIRE(std::regex_search(
      svg, dot, std::regex(R"re(<circle class="point" cx="[-0-9.]+"[^>]*>\n<circle class="point" cx="([-0-9.]+)")re")));
  CHECK(line[1] == dot[1]);
}

TEST_CASE("legends list every series with palette or given colours", "[unit]") {
  StackedBarChart c = sample_bars();
  c.series.push_back({"custom", "#123456", {1, 1, 1}});
  const std::string svg = render_svg(c);
  CHECK(texts_of_class(svg, "legend") == std::vector<std::string>{"compute", "transfer", "custom"});
  const std::vector<Rect> r = bars(svg);
  REQUIRE(r.size() == 9);
  CHECK(r[0].fill == "#0072B2");  // Okabe-Ito blue, then orange
  CHECK(r[1].fill == "#E69F00");
  CHECK(r[2].fill == "#123456");

  const std::string lines = render_svg(sample_lines());
  CHECK(texts_of_class(lines, "legend") == std::vector<std::string>{"sequential", "balanced"});
  CHECK(texts_of_class(lines, "axis-label") == std::vector<std::string>{"batch size", "ms per token"});
}

TEST_CASE("output is deterministic", "[unit]") {
  CHECK(render_svg(sample_bars()) == render_svg(sample_bars()));
  CHECK(render_grouped_svg(sample_bars()) == render_grouped_svg(sample_bars()));
  CHECK(render_svg(sample_lines()) == render_svg(sample_lines()));
  StackedBarChart other = sample_bars();
  other.series[0].values[0] = 11;
  CHECK(render_svg(other) != render_svg(sample_bars()));
}
