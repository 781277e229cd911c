// YAML loading and typed scalar access with located errors.
#include "core/yaml_io.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/input_file.h"

namespace dmap {

namespace {
// Duplicate keys: JSON is read as Python's json reads it (the last value wins, with a
// warning, as transformers sees a config.json); in YAML a duplicate key is an error. Every
// mapping is visited once per reference, within a budget, so aliases that expand without end
// are refused rather than followed.
struct DuplicateKeys {
  const std::string& origin;
  bool json;
  int64_t budget = 5'000'000;

  int depth = 0;

  YAML::Node visit(const YAML::Node& n) {
    if (--budget < 0) {
      throw InputError(origin, 0, 0, "more than 5,000,000 values (aliases that expand without end?)");
    }
    if (!n.IsSequence() && !n.IsMap()) return n;
    if (depth >= 200) {
      throw InputError(origin, n.Mark().line + 1, n.Mark().column + 1,
                       "nested deeper than 200 levels (a recursive alias?)");
    }
    struct Deeper {
      int& d;
      explicit Deeper(int& x) : d(++x) {}
      ~Deeper() { --d; }
    } deeper(depth);
    if (n.IsSequence()) {
      YAML::Node seq = n;
      for (size_t i = 0; i < seq.size(); ++i) {
        const YAML::Node child = seq[i];
        const YAML::Node v = visit(child);
        if (!v.is(child)) seq[i] = v;  // a mapping below had a duplicate key
      }
      return seq;
    }
    if (!n.IsMap()) return n;
    std::vector<std::string> seen;
    std::vector<std::pair<YAML::Node, YAML::Node>> pairs;
    bool duplicate = false, changed = false;
    for (const auto& kv : n) {
      pairs.emplace_back(kv.first, visit(kv.second));
      changed = changed || !pairs.back().second.is(kv.second);
      if (!kv.first.IsScalar()) continue;
      const std::string k = kv.first.Scalar();
      if (std::find(seen.begin(), seen.end(), k) == seen.end()) {
        seen.push_back(k);
        continue;
      }
      duplicate = true;
      const int line = kv.first.Mark().line >= 0 ? kv.first.Mark().line + 1 : 0;
      if (!json)
        throw InputError(origin, line, kv.first.Mark().column + 1, "key '" + k.substr(0, 60) + "' given twice");
      std::cerr << "dmap: warning: " << origin << ":" << line << ": key '" << k.substr(0, 60)
                << "' given twice; the last value is used, as Python's json (and transformers) does\n";
    }
    if (!duplicate && !changed) return n;
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& [k, v] : pairs) {  // a later value replaces an earlier one
      if (k.IsScalar()) {
        out[k.Scalar()] = v;
      } else {
        out[k] = v;
      }
    }
    return out;
  }
};

// YAML 1.2 and JSON allow no C0 control character but tab, line feed and carriage return in
// their text, and no DEL (yaml-cpp would read a NUL byte as the end of a line, or worse).
void check_text_characters(const std::string& text, const std::string& origin) {
  int line = 1, column = 1;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      throw InputError(
          origin, line, column,
          std::string("the control character ") + hex + " is not allowed in YAML or JSON text (a binary file?)");
    }
    if (c == '\n') {
      ++line;
      column = 1;
    } else if ((c & 0xc0) != 0x80) {  // count characters, not UTF-8 continuation bytes
      ++column;
    }
  }
}

YAML::Node parse(const std::string& text, const std::string& origin) {
  check_text_characters(text, origin);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(origin, e.mark.line >= 0 ? e.mark.line + 1 : 0, e.mark.column >= 0 ? e.mark.column + 1 : 0,
                     "malformed YAML/JSON: " + e.msg);
  }
  const bool json = origin.size() >= 5 && origin.compare(origin.size() - 5, 5, ".json") == 0;
  DuplicateKeys d{origin, json};
  return d.visit(root);
}
}  // namespace

YAML::Node load_yaml_file(const std::string& path) {
  check_input_file(path, kMaxTextInputBytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, 0, 0, "cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

YAML::Node load_yaml_string(const std::string& text, const std::string& origin) { return parse(text, origin); }

void fail_at(const std::string& file, const YAML::Node& node, const std::string& message) {
  fail_at(file, node, YAML::Node(), message);
}

void fail_at(const std::string& file, const YAML::Node& node, const YAML::Node& fallback, const std::string& message) {
  YAML::Mark mark = YAML::Mark::null_mark();
  if (node.IsDefined() && node.Mark().line >= 0) {
    mark = node.Mark();
  } else if (fallback.IsDefined() && fallback.Mark().line >= 0) {
    mark = fallback.Mark();
  }
  throw InputError(file, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0, message);
}

bool is_int_literal(const std::string& text) {
  if (text.empty()) return false;
  size_t i = (text[0] == '-' || text[0] == '+') ? 1 : 0;
  if (i == text.size()) return false;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

int64_t yaml_int(const std::string& file, const YAML::Node& node, const std::string& what) {
  if (!node.IsDefined() || node.IsNull()) fail_at(file, node, what + ": expected an integer, found nothing");
  if (!node.IsScalar()) fail_at(file, node, what + ": expected an integer");
  const std::string& s = node.Scalar();
  if (is_int_literal(s)) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == ERANGE) fail_at(file, node, what + ": integer out of range: " + s);
    return v;
  }
  // Accept integral floats such as "1e9" or "4096.0".
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() && *end == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) {
    return static_cast<int64_t>(d);
  }
  fail_at(file, node, what + ": expected an integer, found '" + s + "'");
}

double yaml_double(const std::string& file, const YAML::Node& node, const std::string& what) {
  if (!node.IsDefined() || node.IsNull()) fail_at(file, node, what + ": expected a number, found nothing");
  if (!node.IsScalar()) fail_at(file, node, what + ": expected a number");
  const std::string& s = node.Scalar();
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || *end != '\0' || !std::isfinite(d)) {
    fail_at(file, node, what + ": expected a number, found '" + s + "'");
  }
  return d;
}

bool yaml_bool(const std::string& file, const YAML::Node& node, const std::string& what) {
  if (!node.IsDefined() || !node.IsScalar()) fail_at(file, node, what + ": expected true or false");
  const std::string& s = node.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  fail_at(file, node, what + ": expected true or false, found '" + s + "'");
}

std::string yaml_string(const std::string& file, const YAML::Node& node, const std::string& what) {
  if (!node.IsDefined() || node.IsNull() || !node.IsScalar()) fail_at(file, node, what + ": expected a string");
  for (const char ch : node.Scalar()) {  // an escape such as "\0" or "\e" in a quoted scalar
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      fail_at(file, node, what + ": contains the control character " + hex);
    }
  }
  return node.Scalar();
}

std::string closest_word(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& k : known) {
    // Levenshtein distance, one row at a time.
    std::vector<size_t> row(k.size() + 1);
    for (size_t j = 0; j <= k.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= k.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (word[i - 1] == k[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    const size_t d = row[k.size()];
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  const size_t limit = std::max<size_t>(2, best.size() / 3);
  return best_d <= limit && best_d < std::max(word.size(), best.size()) ? best : "";
}

void check_known_keys(const std::string& file, const YAML::Node& map, const std::vector<std::string>& known,
                      const std::string& where) {
  if (!map.IsMap()) fail_at(file, map, where + ": expected a mapping");
  for (const auto& kv : map) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "";
    if (std::find(known.begin(), known.end(), k) != known.end()) continue;
    std::string list;
    for (const auto& x : known) list.append(list.empty() ? "" : ", ").append(x);
    const std::string near = closest_word(k, known);
    fail_at(file, kv.first,
            where + ": unknown key '" + k.substr(0, 60) + "'" +
                (near.empty() ? "" : " (did you mean '" + near + "'?)") + " (known: " + list + ")");
  }
}

}  // namespace dmap
