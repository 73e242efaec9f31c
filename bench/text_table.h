// TextTable: the aligned plain-text tables the bench commands print (numbers right-aligned, text left-aligned),
// and the number formats they use (thousands separators, fixed decimals, GiB).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mlarun::bench {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);
  void add_row(std::vector<std::string> cells);  // as many cells as the header
  void add_separator();                          // a blank line between groups of rows
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;  // an empty row is a separator
};

std::string with_commas(int64_t v);             // 1234567 -> "1,234,567"
std::string fixed(double v, int decimals);      // fixed(3.14159, 2) -> "3.14"
std::string gib(int64_t bytes, int decimals = 1);  // bytes in GiB, fixed

}  // namespace mlarun::bench
