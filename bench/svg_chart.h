// A small SVG line chart written by our own code, for the bench commands: side-by-side panels sharing a
// categorical x axis (e.g. TP degree), a log-scale y axis with a gridline per decade, one line per series with
// markers and its last value labelled, shaded columns for x values without data, a title, a subtitle and a
// legend. Readable at a glance in any browser; no plotting library needed.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mlarun::bench {

struct ChartSeries {
  std::string label;
  std::string color;  // "#1f77b4"
  bool dashed = false;
  std::vector<double> values;  // one per x tick; NaN or <= 0: no point
};

struct ChartPanel {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<std::string> x_ticks;
  std::vector<ChartSeries> series;
  std::vector<std::string> column_notes;              // per x tick: shade that column and print this ("" = none)
  std::function<std::string(double)> value_format;    // tick and point labels
};

struct ChartLegendEntry {
  std::string label;
  std::string color;
  bool dashed = false;
};

std::string render_line_chart_svg(const std::string& title, const std::string& subtitle,
                                  const std::vector<ChartPanel>& panels, const std::vector<ChartLegendEntry>& legend);

// 1234 -> "1.23K", 69120 -> "69.1K", 3.9e6 -> "3.93M" (three significant digits).
std::string short_number(double v);

}  // namespace mlarun::bench
