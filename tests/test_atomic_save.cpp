// Saves are atomic and leave no debris: a process killed at random moments while it saves never
// damages the destination, and no temporary file outlives the next save (SPEC §17).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <lmshrink/detail/atomic_file.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <random>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = std::string(LMSHRINK_TEST_TMP) + "/atomic_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

int temporaries(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  return n;
}

/// Two versions of a checkpoint, each filled with its own byte, large enough that a save takes
/// a while.
lmshrink::SafeTensors version(char fill, std::size_t bytes) {
  lmshrink::SafeTensors st;
  std::vector<std::uint8_t> data(bytes, static_cast<std::uint8_t>(fill));
  st.put("payload", lmshrink::Dtype::u8, {std::int64_t(bytes)}, data.data());
  st.metadata["version"] = std::string(1, fill);
  return st;
}

/// 'A' or 'B' when the file is one of the two versions complete, else '?'.
char which(const std::string& path, std::size_t bytes) {
  try {
    const auto st = lmshrink::read_safetensors(path);
    const char v = st.meta("version").at(0);
    const auto& t = st.tensors.at("payload");
    if (t.bytes.size() != bytes) return '?';
    for (auto b : t.bytes)
      if (b != static_cast<unsigned char>(v)) return '?';
    return v;
  } catch (const std::exception&) {
    return '?';
  }
}

}  // namespace

TEST_CASE("a save removes the temporaries of dead writers and keeps those of live ones",
          "[atomic]") {
  const std::string dir = fresh_dir("stale");
  const std::string dest = dir + "/model.safetensors";
  const auto st = version('A', 16);
  lmshrink::write_safetensors(st, dest);
  // Debris of a killed writer (no lock) and a file of a writer still at work (locked).
  const std::string dead = dest + ".tmp.99999.0", live = dest + ".tmp.99998.0",
                    other = dir + "/other.safetensors.tmp.99997.0";
  for (const auto& p : {dead, live, other}) std::fclose(std::fopen(p.c_str(), "wb"));
  const int fd = ::open(live.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  lmshrink::write_safetensors(st, dest);
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));    // its writer holds the lock
  CHECK(fs::exists(other));   // another destination's temporaries are not this save's business
  ::close(fd);                // the writer "dies"
  lmshrink::write_safetensors(st, dest);
  CHECK_FALSE(fs::exists(live));
  CHECK(which(dest, 16) == 'A');
  fs::remove_all(dir);
}

TEST_CASE("a failed or interrupted write leaves the destination and no temporary", "[atomic]") {
  const std::string dir = fresh_dir("failed");
  const std::string dest = dir + "/x.bin";
  lmshrink::write_safetensors(version('A', 64), dest);
  REQUIRE_THROWS_AS(lmshrink::detail::write_file_atomically("test", dest, [](std::FILE* f) {
                      std::fputs("partial", f);
                      return false;
                    }),
                    lmshrink::io_error);
  REQUIRE_THROWS_AS(lmshrink::detail::write_file_atomically(
                        "test", dest, [](std::FILE*) -> bool { throw std::runtime_error("interrupted"); }),
                    std::runtime_error);
  CHECK(which(dest, 64) == 'A');
  CHECK(temporaries(dir) == 0);
  fs::remove_all(dir);
}

TEST_CASE("200 kills at random moments during saves: the destination is always complete and "
          "no temporary file survives the next save",
          "[atomic][kill]") {
  const std::string dir = fresh_dir("kill");
  const std::string dest = dir + "/model.safetensors";
  const std::size_t bytes = std::size_t(1) << 21;
  const auto a = version('A', bytes), b = version('B', bytes);
  lmshrink::write_safetensors(a, dest);

  // The kill moment is uniform over about two saves.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) lmshrink::write_safetensors(i % 2 ? a : b, dest);
  const auto save_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count() / 3;
  std::mt19937 rng(20261128);
  std::uniform_int_distribution<long> delay(0, 2 * std::max<long>(save_us, 200));

  int kills = 0, damaged = 0, left_after_kill = 0, most_at_once = 0;
  for (int k = 0; k < 200; ++k) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      for (int i = 0;; ++i) lmshrink::write_safetensors(i % 2 ? a : b, dest);
    }
    ::usleep(static_cast<useconds_t>(delay(rng)));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ++kills;
    if (which(dest, bytes) == '?') ++damaged;
    const int left = temporaries(dir);
    if (left > 0) ++left_after_kill;
    most_at_once = std::max(most_at_once, left);
  }
  lmshrink::write_safetensors(a, dest);
  const int after_next_save = temporaries(dir);
  std::printf("kills %d, damaged destinations %d, kills that left a temporary until the next save "
              "%d (at most %d at once), temporaries after the next save %d (save ~%ld us)\n",
              kills, damaged, left_after_kill, most_at_once, after_next_save, long(save_us));
  CHECK(kills == 200);
  CHECK(damaged == 0);
  CHECK(most_at_once <= 1);  // each save removes what the previous kill left
  CHECK(after_next_save == 0);
  CHECK(which(dest, bytes) == 'A');
  fs::remove_all(dir);
}
