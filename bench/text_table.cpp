// Plain-text tables and number formatting (see text_table.h).
#include "bench/text_table.h"

#include <algorithm>
#include <cstdio>

#include "runtime/error.h"

namespace mlarun::bench {

namespace {
bool looks_numeric(const std::string& s) {
  if (s.empty()) return false;
  char c = s[0];
  return (c >= '0' && c <= '9') || ((c == '-' || c == '+') && s.size() > 1 && s[1] >= '0' && s[1] <= '9');
}
}  // namespace

TextTable::TextTable(std::vector<std::string> header) : header_(std::move(header)) {}

void TextTable::add_row(std::vector<std::string> cells) {
  MLARUN_CHECK(cells.size() == header_.size(), "TextTable: ", cells.size(), " cells for ", header_.size(), " columns");
  rows_.push_back(std::move(cells));
}

void TextTable::add_separator() { rows_.emplace_back(); }

std::string TextTable::render() const {
  std::vector<size_t> width(header_.size(), 0);
  for (size_t i = 0; i < header_.size(); ++i) width[i] = header_[i].size();
  for (const auto& row : rows_)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  // A column whose cells are all numbers (or "-") gets a right-aligned header too.
  std::vector<bool> numeric(header_.size(), true);
  for (const auto& row : rows_)
    for (size_t i = 0; i < row.size(); ++i) numeric[i] = numeric[i] && (looks_numeric(row[i]) || row[i] == "-");
  auto line = [&](const std::vector<std::string>& cells, bool header) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      std::string pad(width[i] - cells[i].size(), ' ');
      bool right = header ? numeric[i] : looks_numeric(cells[i]) || (numeric[i] && cells[i] == "-");
      out += right ? pad + cells[i] : cells[i] + (i + 1 < cells.size() ? pad : "");
      if (i + 1 < cells.size()) out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(header_, true);
  for (const auto& row : rows_) out += row.empty() ? "\n" : line(row, false);
  return out;
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return v < 0 ? "-" + s : s;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string gib(int64_t bytes, int decimals) { return fixed(double(bytes) / double(int64_t(1) << 30), decimals); }

}  // namespace mlarun::bench
