// SVG line charts (see svg_chart.h). Layout in fixed pixels: a header, panels side by side, a legend below.
#include "bench/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace mlarun::bench {

namespace {

constexpr double kPanelW = 560, kPanelH = 400, kHeaderH = 70, kLegendRowH = 22;
constexpr double kLeft = 80, kRight = 96, kTop = 40, kBottom = 58;  // plot margins inside a panel

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

bool has_value(double v) { return std::isfinite(v) && v > 0; }

std::string text(double x, double y, const std::string& s, const std::string& extra = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + extra + ">" + esc(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& style) {
  return "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) + "\" " + style +
         "/>\n";
}

std::string render_panel(const ChartPanel& p, double ox, double oy) {
  std::ostringstream svg;
  const double px = ox + kLeft, py = oy + kTop, pw = kPanelW - kLeft - kRight, ph = kPanelH - kTop - kBottom;
  const size_t n = p.x_ticks.size();
  auto fmt = p.value_format ? p.value_format : short_number;
  auto col_x = [&](size_t i) { return px + pw * (double(i) + 0.5) / double(std::max<size_t>(n, 1)); };
  svg << text(ox + kPanelW / 2, oy + 22, p.title, "text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\"");

  for (size_t i = 0; i < n && i < p.column_notes.size(); ++i) {
    if (p.column_notes[i].empty()) continue;
    double w = pw / double(n);
    svg << "<rect x=\"" << num(px + w * double(i)) << "\" y=\"" << num(py) << "\" width=\"" << num(w)
        << "\" height=\"" << num(ph) << "\" fill=\"#eeeeee\"/>\n";
    std::istringstream lines(p.column_notes[i]);
    std::string l;
    for (double y = py + ph / 2 - 14; std::getline(lines, l); y += 14)
      svg << text(col_x(i), y, l, "text-anchor=\"middle\" font-size=\"11\" fill=\"#666666\"");
  }

  double lo = INFINITY, hi = -INFINITY;
  for (const ChartSeries& s : p.series)
    for (double v : s.values)
      if (has_value(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  svg << "<rect x=\"" << num(px) << "\" y=\"" << num(py) << "\" width=\"" << num(pw) << "\" height=\"" << num(ph)
      << "\" fill=\"none\" stroke=\"#333333\"/>\n";
  for (size_t i = 0; i < n; ++i) {
    svg << line(col_x(i), py + ph, col_x(i), py + ph + 5, "stroke=\"#333333\"");
    svg << text(col_x(i), py + ph + 20, p.x_ticks[i], "text-anchor=\"middle\" font-size=\"13\"");
  }
  svg << text(px + pw / 2, py + ph + 44, p.x_label, "text-anchor=\"middle\" font-size=\"13\"");
  svg << text(ox + 18, py + ph / 2, p.y_label,
              "text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 " + num(ox + 18) + " " +
                  num(py + ph / 2) + ")\"");
  if (!(lo <= hi)) {
    svg << text(px + pw / 2, py + ph / 2, "no data", "text-anchor=\"middle\" font-size=\"14\" fill=\"#666666\"");
    return svg.str();
  }
  double e_lo = std::floor(std::log10(lo)), e_hi = std::ceil(std::log10(hi));
  if (e_hi <= e_lo) e_hi = e_lo + 1;
  auto y_of = [&](double v) { return py + ph * (1 - (std::log10(v) - e_lo) / (e_hi - e_lo)); };
  for (double e = e_lo; e <= e_hi; e += 1) {
    double y = y_of(std::pow(10, e));
    svg << line(px, y, px + pw, y, "stroke=\"#cccccc\"");
    svg << text(px - 6, y + 4, fmt(std::pow(10, e)), "text-anchor=\"end\" font-size=\"12\"");
    for (int m = 2; m <= 9 && e < e_hi; ++m)  // light minor lines inside the decade
      svg << line(px, y_of(m * std::pow(10, e)), px + pw, y_of(m * std::pow(10, e)), "stroke=\"#f0f0f0\"");
  }

  struct EndLabel {
    double x, y;
    std::string text, color;
  };
  std::vector<EndLabel> labels;
  for (const ChartSeries& s : p.series) {
    std::string stroke = "stroke=\"" + s.color + "\" stroke-width=\"2.5\"" +
                         (s.dashed ? std::string(" stroke-dasharray=\"7 4\"") : std::string());
    int last = -1;
    for (size_t i = 0; i < s.values.size() && i < n; ++i) {
      if (!has_value(s.values[i])) continue;
      if (i > 0 && last == int(i) - 1)
        svg << line(col_x(i - 1), y_of(s.values[i - 1]), col_x(i), y_of(s.values[i]), stroke);
      last = int(i);
    }
    for (size_t i = 0; i < s.values.size() && i < n; ++i)
      if (has_value(s.values[i]))
        svg << "<circle cx=\"" << num(col_x(i)) << "\" cy=\"" << num(y_of(s.values[i])) << "\" r=\"4\" fill=\""
            << (s.dashed ? "#ffffff" : s.color) << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"/>\n";
    if (last >= 0) labels.push_back({col_x(size_t(last)) + 9, y_of(s.values[size_t(last)]), fmt(s.values[size_t(last)]), s.color});
  }
  // Keep end labels of the same column at least 12 px apart: push down, then push back up from the plot's
  // bottom so that a crowded column does not spill its labels onto the x axis.
  std::sort(labels.begin(), labels.end(), [](const EndLabel& a, const EndLabel& b) {
    return a.x != b.x ? a.x < b.x : a.y < b.y;
  });
  for (size_t i = 1; i < labels.size(); ++i)
    if (labels[i].x == labels[i - 1].x && labels[i].y < labels[i - 1].y + 12) labels[i].y = labels[i - 1].y + 12;
  for (size_t i = labels.size(); i-- > 0;) {
    bool last_of_column = i + 1 == labels.size() || labels[i + 1].x != labels[i].x;
    double bound = last_of_column ? py + ph - 4 : labels[i + 1].y - 12;
    if (labels[i].y > bound) labels[i].y = bound;
  }
  for (const EndLabel& l : labels)
    svg << text(l.x, l.y + 4, l.text, "font-size=\"11\" fill=\"" + l.color + "\"");
  return svg.str();
}

}  // namespace

std::string short_number(double v) {
  const char* suffix[] = {"", "K", "M", "G", "T", "P"};
  int k = 0;
  double a = std::fabs(v);
  while (a >= 1000 && k < 5) a /= 1000, v /= 1000, ++k;
  char buf[32];
  if (a == std::floor(a))  // decades and other round values: no decimals
    std::snprintf(buf, sizeof buf, "%.0f%s", v, suffix[k]);
  else
    std::snprintf(buf, sizeof buf, a >= 100 || k == 0 ? "%.0f%s" : a >= 10 ? "%.1f%s" : "%.2f%s", v, suffix[k]);
  return buf;
}

std::string render_line_chart_svg(const std::string& title, const std::string& subtitle,
                                  const std::vector<ChartPanel>& panels, const std::vector<ChartLegendEntry>& legend) {
  const double width = 20 + kPanelW * double(std::max<size_t>(panels.size(), 1));
  const int per_row = std::max(1, int((width - 40) / 230));
  const int legend_rows = (int(legend.size()) + per_row - 1) / per_row;
  const double height = kHeaderH + kPanelH + 20 + kLegendRowH * legend_rows + 10;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\"" << num(height)
      << "\" viewBox=\"0 0 " << num(width) << " " << num(height) << "\" font-family=\"Helvetica, Arial, sans-serif\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  svg << text(width / 2, 28, title, "text-anchor=\"middle\" font-size=\"19\" font-weight=\"bold\"");
  svg << text(width / 2, 52, subtitle, "text-anchor=\"middle\" font-size=\"13\" fill=\"#444444\"");
  for (size_t i = 0; i < panels.size(); ++i) svg << render_panel(panels[i], 10 + kPanelW * double(i), kHeaderH);
  double ly = kHeaderH + kPanelH + 20;
  for (size_t i = 0; i < legend.size(); ++i) {
    double x = 40 + 230 * double(int(i) % per_row), y = ly + kLegendRowH * double(int(i) / per_row);
    svg << line(x, y, x + 34, y,
                "stroke=\"" + legend[i].color + "\" stroke-width=\"2.5\"" +
                    (legend[i].dashed ? std::string(" stroke-dasharray=\"7 4\"") : std::string()));
    svg << "<circle cx=\"" << num(x + 17) << "\" cy=\"" << num(y) << "\" r=\"4\" fill=\""
        << (legend[i].dashed ? "#ffffff" : legend[i].color) << "\" stroke=\"" << legend[i].color
        << "\" stroke-width=\"2\"/>\n";
    svg << text(x + 42, y + 4, legend[i].label, "font-size=\"13\"");
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace mlarun::bench
