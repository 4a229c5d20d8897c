#pragma once
// A progress line for the examples: done/total, a bar, free text (step, loss, tokens/s) and an
// ETA. Redrawn in place on a terminal (at most 5 times a second); on a pipe or file, one line
// per tenth of the work, so logs stay short. Under an MPI launcher always one line per tenth:
// Open MPI gives rank 0 a pseudo-terminal even when mpirun's own output goes to a log, so a
// redrawn bar would fill the log. Thread-safe.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unistd.h>

namespace examples {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

/// Whether the process was started by an MPI launcher (Open MPI, PMI or PMIx environment).
inline bool under_mpi_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

class Progress {
 public:
  Progress(std::string label, double total)
      : label_(std::move(label)), total_(total), start_(clock::now()),
        tty_(isatty(fileno(stdout)) && !under_mpi_launcher()) {}

  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

  /// Sets the work done so far and the text shown after the bar.
  void update(double done, const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = done;
    const double t = elapsed();
    if (tty_) {
      if (t - last_draw_ < 0.2 && done_ < total_) return;
      last_draw_ = t;
      draw(text, '\r');
    } else {
      const int tenth = total_ > 0 ? int(10 * done_ / total_) : 10;
      if (tenth <= last_tenth_) return;
      last_tenth_ = tenth;
      draw(text, '\n');
    }
  }

  /// Ends the line with a final summary.
  void finish(const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = total_;
    draw(text, tty_ ? '\r' : '\n');
    if (tty_) std::printf("\n");
    std::fflush(stdout);
  }

  /// Prints a line of its own above the progress line.
  void print(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (tty_) std::printf("\r\033[K");
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

 private:
  using clock = std::chrono::steady_clock;

  void draw(const std::string& text, char end) {
    const int width = 24;
    const double f = total_ > 0 ? std::min(1.0, done_ / total_) : 1.0;
    std::string bar(std::size_t(f * width + 0.5), '#');
    bar.resize(width, '.');
    const double t = elapsed();
    const std::string eta = f > 0 && f < 1 ? format_duration(t * (1 - f) / f) : "0s";
    if (end == '\r') std::printf("\r\033[K");
    std::printf("%s [%s] %3.0f%% %s | %s elapsed, ETA %s%c", label_.c_str(), bar.c_str(), 100 * f,
                text.c_str(), format_duration(t).c_str(), eta.c_str(), end == '\n' ? '\n' : ' ');
    std::fflush(stdout);
  }

  std::string label_;
  double total_, done_ = 0, last_draw_ = -1;
  int last_tenth_ = -1;
  clock::time_point start_;
  bool tty_;
  std::mutex mutex_;
};

}  // namespace examples
