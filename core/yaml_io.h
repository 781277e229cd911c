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

}  // namespace dmap
