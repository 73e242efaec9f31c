// What the bench commands share: comma-separated option lists, cache dtype lists, writing the JSON and chart
// files (a .png path is produced by converting our SVG with rsvg-convert when it exists, never faked).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/cache_dtype.h"
#include "runtime/runtime_options.h"

namespace mlarun::bench {

// "1,2,4,8" -> {1, 2, 4, 8}; every item an integer >= min_value; errors name the option and the item.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option, int64_t min_value = 1);
// "bf16,fp8,int8" -> {BF16, FP8, INT8} (cache_dtype.h); an unknown or repeated name is an error naming it.
std::vector<CacheDtype> parse_kv_dtypes(const std::string& text, const std::string& option);
// "auto,bf16,fp8,int8" -> the runtime's --kv-cache-dtype values (runtime_options.h; bench decode runs them), in
// order; an unknown or repeated name is an error naming it.
std::vector<KvCacheDtype> parse_kv_cache_dtypes(const std::string& text, const std::string& option);
// The name a kv dtype goes by in our tables and JSON (vLLM's kv_cache_dtype spelling: "bf16", "fp8", "int8").
inline std::string kv_dtype_name(CacheDtype t) { return cache_dtype_name(t); }

// The q-th percentile (0..100) of `v` (non-empty) with linear interpolation between neighbours, numpy's default
// (vLLM's benchmark metrics); median(v) = percentile(v, 50): the middle value, or the mean of the two middle ones.
double percentile(std::vector<double> v, double q);
inline double median(const std::vector<double>& v) { return percentile(v, 50); }

// Writes `content` to `path`; the error names the option and the path.
void write_text_file(const std::string& path, const std::string& content, const std::string& option);
// Writes an SVG chart to `path`. For a .png path: the SVG goes next to it (.svg) and rsvg-convert makes the PNG
// if it is installed; otherwise a clear message says only the SVG exists. Returns the file(s) written, for the
// user: "out/cache.svg" or "out/cache.png (from out/cache.svg)".
std::string write_chart(const std::string& path, const std::string& svg, const std::string& option);

}  // namespace mlarun::bench
