#pragma once
// A small SVG line/scatter plot writer for the examples (no plotting dependency).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace examples {

struct Series {
  std::string label;
  std::string color;  // any SVG colour, e.g. "#1f77b4"
  std::vector<double> x, y;
  bool dashed = false;
  bool markers = false;
  bool in_legend = true;
  double width = 1.5;
};

struct Plot {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  int width = 900, height = 560;
  std::vector<Series> series;

  std::string svg() const {
    const double left = 80, right = 230, top = 50, bottom = 60;
    const double pw = width - left - right, ph = height - top - bottom;
    double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
    const auto tx = [&](double v) { return log_x ? std::log10(v) : v; };
    const auto ty = [&](double v) { return log_y ? std::log10(v) : v; };
    for (const auto& s : series)
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if ((log_x && s.x[i] <= 0) || (log_y && s.y[i] <= 0)) continue;
        x0 = std::min(x0, tx(s.x[i]));
        x1 = std::max(x1, tx(s.x[i]));
        y0 = std::min(y0, ty(s.y[i]));
        y1 = std::max(y1, ty(s.y[i]));
      }
    if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
    if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
    if (log_y) { y0 = std::floor(y0); y1 = std::ceil(y1); }
    else { const double pad = 0.05 * (y1 - y0); y0 -= pad; y1 += pad; }
    const auto px = [&](double v) { return left + (tx(v) - x0) / (x1 - x0) * pw; };
    const auto py = [&](double v) { return top + ph - (ty(v) - y0) / (y1 - y0) * ph; };

    std::ostringstream o;
    o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='12'>\n"
      << "<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << left + pw / 2 << "' y='28' text-anchor='middle' font-size='16'>"
      << escape(title) << "</text>\n";
    // Grid and ticks.
    const auto ticks = [](double a, double b, bool log) {
      std::vector<double> t;
      if (log) {
        for (double e = std::ceil(a); e <= b + 1e-9; e += 1) t.push_back(e);
        return t;
      }
      const double raw = (b - a) / 6, mag = std::pow(10, std::floor(std::log10(raw)));
      const double step = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
      for (double v = std::ceil(a / step) * step; v <= b + 1e-12; v += step) t.push_back(v);
      return t;
    };
    for (double t : ticks(x0, x1, log_x)) {
      const double v = log_x ? std::pow(10, t) : t;
      const double X = px(v);
      o << "<line x1='" << X << "' y1='" << top << "' x2='" << X << "' y2='" << top + ph
        << "' stroke='#e5e5e5'/>\n<text x='" << X << "' y='" << top + ph + 18
        << "' text-anchor='middle'>" << number(v) << "</text>\n";
    }
    for (double t : ticks(y0, y1, log_y)) {
      const double v = log_y ? std::pow(10, t) : t;
      const double Y = py(v);
      o << "<line x1='" << left << "' y1='" << Y << "' x2='" << left + pw << "' y2='" << Y
        << "' stroke='#e5e5e5'/>\n<text x='" << left - 6 << "' y='" << Y + 4
        << "' text-anchor='end'>" << number(v) << "</text>\n";
    }
    o << "<rect x='" << left << "' y='" << top << "' width='" << pw << "' height='" << ph
      << "' fill='none' stroke='black'/>\n"
      << "<text x='" << left + pw / 2 << "' y='" << height - 18 << "' text-anchor='middle'>"
      << escape(x_label) << "</text>\n"
      << "<text transform='translate(22," << top + ph / 2 << ") rotate(-90)' text-anchor='middle'>"
      << escape(y_label) << "</text>\n";
    for (const auto& s : series) {
      std::ostringstream pts;
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if ((log_x && s.x[i] <= 0) || (log_y && s.y[i] <= 0)) continue;
        pts << px(s.x[i]) << ',' << py(s.y[i]) << ' ';
      }
      o << "<polyline fill='none' stroke='" << s.color << "' stroke-width='" << s.width << "'"
        << (s.dashed ? " stroke-dasharray='6,4'" : "") << " stroke-opacity='0.85' points='"
        << pts.str() << "'/>\n";
      if (s.markers)
        for (std::size_t i = 0; i < s.x.size(); ++i)
          o << "<circle cx='" << px(s.x[i]) << "' cy='" << py(s.y[i]) << "' r='4' fill='"
            << s.color << "'/>\n";
    }
    double ly = top + 10;
    for (const auto& s : series) {
      if (!s.in_legend) continue;
      o << "<line x1='" << left + pw + 15 << "' y1='" << ly << "' x2='" << left + pw + 45
        << "' y2='" << ly << "' stroke='" << s.color << "' stroke-width='3'"
        << (s.dashed ? " stroke-dasharray='6,4'" : "") << "/>\n<text x='" << left + pw + 52
        << "' y='" << ly + 4 << "'>" << escape(s.label) << "</text>\n";
      ly += 20;
    }
    o << "</svg>\n";
    return o.str();
  }

  bool write(const std::string& path) const {
    std::ofstream f(path);
    f << svg();
    return static_cast<bool>(f);
  }

 private:
  static std::string number(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", std::abs(v) < 1e-12 ? 0.0 : v);
    return b;
  }
  static std::string escape(const std::string& s) {
    std::string r;
    for (char c : s) {
      if (c == '<') r += "&lt;";
      else if (c == '>') r += "&gt;";
      else if (c == '&') r += "&amp;";
      else r += c;
    }
    return r;
  }
};

}  // namespace examples
