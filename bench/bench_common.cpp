// Option lists and output files of the bench commands (see bench_common.h).
#include "bench/bench_common.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "runtime/error.h"

namespace mlarun::bench {

namespace {
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  size_t pos = 0;
  while (true) {
    size_t comma = text.find(',', pos);
    items.push_back(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    if (comma == std::string::npos) return items;
    pos = comma + 1;
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

double percentile(std::vector<double> v, double q) {
  MLARUN_CHECK(!v.empty(), "percentile of no values");
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option, int64_t min_value) {
  std::vector<int64_t> values;
  for (const std::string& item : split_commas(text)) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < min_value)
      fail("option ", option, ": '", item, "' in '", text, "' is not an integer >= ", min_value,
           " (expected a comma-separated list such as 1,2,4,8)");
    values.push_back(v);
  }
  return values;
}

namespace {
// The items of a comma list, each parsed by `parse` and allowed once (an error names the repeated item).
template <typename T, typename Parse>
std::vector<T> parse_unique_list(const std::string& text, const std::string& option, Parse parse) {
  std::vector<T> values;
  for (const std::string& item : split_commas(text)) {
    const T t = parse(item);
    for (const T& seen : values)
      if (seen == t) fail("option ", option, ": '", item, "' in '", text, "' is listed twice");
    values.push_back(t);
  }
  return values;
}
}  // namespace

std::vector<CacheDtype> parse_kv_dtypes(const std::string& text, const std::string& option) {
  return parse_unique_list<CacheDtype>(text, option,
                                       [&](const std::string& item) { return parse_cache_dtype(item, option); });
}

std::vector<KvCacheDtype> parse_kv_cache_dtypes(const std::string& text, const std::string& option) {
  return parse_unique_list<KvCacheDtype>(text, option, parse_kv_cache_dtype);
}

void write_text_file(const std::string& path, const std::string& content, const std::string& option) {
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("option ", option, ": cannot write '", path, "'");
  out << content;
  if (!out) fail("option ", option, ": writing '", path, "' failed");
}

std::string write_chart(const std::string& path, const std::string& svg, const std::string& option) {
  if (!ends_with(path, ".png")) {
    write_text_file(path, svg, option);
    return path;
  }
  std::string svg_path = path.substr(0, path.size() - 4) + ".svg";
  write_text_file(svg_path, svg, option);
  if (std::system("command -v rsvg-convert >/dev/null 2>&1") == 0) {
    std::string cmd = "rsvg-convert -f png -o '" + path + "' '" + svg_path + "'";
    if (path.find('\'') == std::string::npos && std::system(cmd.c_str()) == 0)
      return path + " (converted from " + svg_path + " by rsvg-convert)";
  }
  std::cerr << "mlarun: option " << option << ": PNG is not produced natively (mlarun writes SVG itself) and "
            << "rsvg-convert is not available; wrote the chart as SVG to " << svg_path << " instead of " << path
            << "\n";
  return svg_path + " (SVG only: no PNG converter)";
}

}  // namespace mlarun::bench
