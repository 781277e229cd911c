// Reading YAML (and JSON, which yaml-cpp parses as YAML) with errors that name the file,
// the line and the column of the offending node.
//
// Example:
//   YAML::Node root = dmap::load_yaml_file("configs/models/llama31_8b.yaml");
//   int64_t layers = dmap::yaml_int(file, root["num_hidden_layers"], "num_hidden_layers");
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dmap {

// Parses the file; a missing file or a syntax error becomes an InputError with file:line:col.
YAML::Node load_yaml_file(const std::string& path);

// Parses text (used by tests and by inline values); `origin` names it in errors.
YAML::Node load_yaml_string(const std::string& text, const std::string& origin);

// Throws InputError located at `node` (or at `fallback` when `node` has no mark).
[[noreturn]] void fail_at(const std::string& file, const YAML::Node& node, const std::string& message);
[[noreturn]] void fail_at(const std::string& file, const YAML::Node& node, const YAML::Node& fallback,
                          const std::string& message);

// Scalar conversions that report what was expected. `what` names the field in the message.
int64_t yaml_int(const std::string& file, const YAML::Node& node, const std::string& what);
double yaml_double(const std::string& file, const YAML::Node& node, const std::string& what);
bool yaml_bool(const std::string& file, const YAML::Node& node, const std::string& what);
std::string yaml_string(const std::string& file, const YAML::Node& node, const std::string& what);

// True when the scalar text is an integer literal (optionally signed).
bool is_int_literal(const std::string& text);

// Every key of the mapping `map` must be one of `known`: otherwise an InputError at the key,
// "<where>: unknown key 'x' — did you mean 'y'? (known: ...)" when a known key is close
// (edit distance at most 2, or a third of its length).
void check_known_keys(const std::string& file, const YAML::Node& map, const std::vector<std::string>& known,
                      const std::string& where);

// The known word closest to `word` by edit distance when it is close enough to be a typo, "".
std::string closest_word(const std::string& word, const std::vector<std::string>& known);

}  // namespace dmap
