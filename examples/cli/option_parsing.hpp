#pragma once
// Command-line values for the examples' mains: comma lists and bounded integers, with errors
// that name the program and the flag.
#include <cstdlib>
#include <lmshrink/errors.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace examples {

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

inline long parse_int(const char* where, const std::string& flag, const std::string& s, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    lmshrink::fail<lmshrink::value_error>(where, flag, " must be an integer in [", lo, ", ", hi, "], got '",
                                                  s, "'");
  return v;
}

}  // namespace examples
