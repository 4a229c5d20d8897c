// Saves are atomic and leave no debris: a process killed at random moments while it saves never
// damages the destination, and no temporary file outlives the next save (SPEC §17).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <lmshrink/files.hpp>
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

// ---- Hugging Face directories: replaced as a whole ----------------------------------------------

#include <lmshrink/io/hf_checkpoint.hpp>
#include <set>
#include <lmshrink/models/hf.hpp>

namespace {

/// A checkpoint "version": its config's vocabulary size names it (a, b, ...), every tensor is
/// filled with that letter and carries it in the metadata.
struct DirVersion {
  lmshrink::HfConfig config;
  lmshrink::SafeTensors tensors;
  std::int64_t shard_bytes = 0;
};

DirVersion dir_version(char fill, int tensors, std::size_t bytes_each, std::int64_t shard_bytes) {
  lmshrink::models::llama::Config c;
  c.dim = 8;
  c.hidden_dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.vocab_size = 100 + fill;  // the version, readable from config.json alone
  c.seq_len = 32;
  DirVersion v;
  v.config = lmshrink::models::llama::hf_config_of(c);
  std::vector<std::uint8_t> data(bytes_each, static_cast<std::uint8_t>(fill));
  for (int i = 0; i < tensors; ++i)
    v.tensors.put("t" + std::to_string(i), lmshrink::Dtype::u8, {std::int64_t(bytes_each)}, data.data());
  v.tensors.metadata["version"] = std::string(1, fill);
  v.shard_bytes = shard_bytes;
  return v;
}

void save(const DirVersion& v, const std::string& dir) {
  lmshrink::models::write_hf_directory(v.config, v.tensors, dir, v.shard_bytes);
}

/// The version letter when config and every tensor agree and are complete; 'm' for a mix of two
/// versions; '?' when the directory cannot be read.
char which_dir(const std::string& dir, int tensors_a, int tensors_b, std::size_t bytes) {
  lmshrink::models::HfCheckpoint c;
  try {
    c = lmshrink::models::read_hf_directory(dir);
  } catch (const std::exception&) {
    return '?';
  }
  const char v = char(c.config.vocab_size - 100);
  const int expected = v == 'A' ? tensors_a : tensors_b;
  if (int(c.tensors.tensors.size()) != expected) return 'm';
  for (const auto& [name, t] : c.tensors.tensors) {
    if (t.bytes.size() != bytes) return 'm';
    for (auto b : t.bytes)
      if (b != static_cast<unsigned char>(v)) return 'm';
  }
  return v;
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

}  // namespace

TEST_CASE("a directory save leaves exactly the new model's files: an old model.safetensors no "
          "longer shadows shards, and shards of earlier saves go",
          "[atomic][hf]") {
  const std::string parent = fresh_dir("hf_files");
  const std::string dir = parent + "/model";
  const auto a = dir_version('A', 4, 1000, 0);     // one model.safetensors
  const auto b = dir_version('B', 6, 1000, 2500);  // three shards of two tensors
  const auto c = dir_version('C', 6, 1000, 1500);  // six shards
  save(a, dir);
  { std::FILE* f = std::fopen((dir + "/tokenizer.json").c_str(), "wb"); std::fputs("{}", f); std::fclose(f); }
  save(b, dir);
  CHECK(which_dir(dir, 4, 6, 1000) == 'B');  // before the fix: 'A', from the old single file
  CHECK(entries(dir) == std::set<std::string>{"config.json", "model.safetensors.index.json", "tokenizer.json",
                                              "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                              "model-00003-of-00003.safetensors"});
  save(c, dir);
  CHECK(which_dir(dir, 4, 6, 1000) == 'C');
  CHECK(entries(dir).size() == 2 + 6 + 1);  // config, index, 6 shards, the tokenizer kept
  save(a, dir);
  CHECK(which_dir(dir, 4, 6, 1000) == 'A');
  CHECK(entries(dir) == std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json"});
  CHECK(entries(parent) == std::set<std::string>{"model"});  // nothing beside it
  // A folder of the user's that only looks like a temporary is never touched; a dead writer's is.
  fs::create_directories(parent + "/model.tmp.backup");
  fs::create_directories(parent + "/model.tmp.123.4");
  save(c, dir);
  CHECK(entries(parent) == std::set<std::string>{"model", "model.tmp.backup"});
  fs::remove_all(parent);
}

TEST_CASE("a directory save that fails leaves the old model and nothing beside it", "[atomic][hf]") {
  const std::string parent = fresh_dir("hf_fail");
  const std::string dir = parent + "/model";
  save(dir_version('A', 2, 100, 0), dir);
  auto bad = dir_version('B', 2, 100, 0);
  bad.config.model_type = "t5";  // hf_config_json refuses it
  CHECK_THROWS_AS(save(bad, dir), lmshrink::value_error);
  CHECK(which_dir(dir, 2, 2, 100) == 'A');
  REQUIRE_THROWS_AS(lmshrink::detail::replace_directory_atomically(
                        "test", dir, [](const std::string&) { return false; },
                        [](const std::string& out) {
                          std::FILE* f = std::fopen((out + "/config.json").c_str(), "wb");
                          std::fclose(f);
                          throw std::runtime_error("disk full");
                        }),
                    std::runtime_error);
  CHECK(which_dir(dir, 2, 2, 100) == 'A');
  CHECK(entries(parent) == std::set<std::string>{"model"});
  std::FILE* f = std::fopen((parent + "/file").c_str(), "wb");
  std::fclose(f);
  REQUIRE_THROWS_AS(save(dir_version('A', 2, 100, 0), parent + "/file"), lmshrink::io_error);
  fs::remove_all(parent);
}

TEST_CASE("150 kills at random moments during directory saves: never a mix, never unreadable, "
          "and nothing stale after the next save",
          "[atomic][hf][kill]") {
  const std::string parent = fresh_dir("hf_kill");
  const std::string dir = parent + "/model";
  const std::size_t bytes = std::size_t(1) << 18;
  const auto a = dir_version('A', 4, bytes, 0);              // 1 MiB in one file
  const auto b = dir_version('B', 6, bytes, 2 * bytes + 1);  // 1.5 MiB in three shards
  save(a, dir);
  { std::FILE* f = std::fopen((dir + "/tokenizer.json").c_str(), "wb"); std::fputs("{}", f); std::fclose(f); }

  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) save(i % 2 ? a : b, dir);
  const auto save_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count() / 4;
  std::mt19937 rng(20261202);
  std::uniform_int_distribution<long> delay(0, 2 * std::max<long>(save_us, 200));

  int kills = 0, mixed = 0, unreadable = 0, stale_at_most = 0;
  for (int k = 0; k < 150; ++k) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      for (int i = 0;; ++i) save(i % 2 ? a : b, dir);
    }
    ::usleep(static_cast<useconds_t>(delay(rng)));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ++kills;
    const char v = which_dir(dir, 4, 6, bytes);
    if (v == 'm') ++mixed;
    if (v == '?') ++unreadable;
    stale_at_most = std::max(stale_at_most, int(entries(parent).size()) - 1);
  }
  save(a, dir);
  const auto beside = entries(parent);
  const auto inside = entries(dir);
  std::printf("directory saves: kills %d, mixed %d, unreadable %d, stale siblings at most %d, after "
              "the next save %zu beside and %zu files inside (save ~%ld us)\n",
              kills, mixed, unreadable, stale_at_most, beside.size() - 1, inside.size(), long(save_us));
  CHECK(kills == 150);
  CHECK(mixed == 0);
  CHECK(unreadable == 0);
  CHECK(stale_at_most <= 2);  // each save removes what the previous kill left
  CHECK(beside == std::set<std::string>{"model"});
  CHECK(inside == std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json"});
  CHECK(which_dir(dir, 4, 6, bytes) == 'A');
  fs::remove_all(parent);
}

TEST_CASE("a reader racing a writer that saves in a loop never sees a mix", "[atomic][hf]") {
  const std::string parent = fresh_dir("hf_race");
  const std::string dir = parent + "/model";
  const std::size_t bytes = std::size_t(1) << 16;
  const auto a = dir_version('A', 4, bytes, 0);
  const auto b = dir_version('B', 6, bytes, 2 * bytes + 1);
  save(a, dir);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    for (int i = 0;; ++i) save(i % 2 ? a : b, dir);
  }
  int seen_a = 0, seen_b = 0, bad = 0;
  for (int i = 0; i < 300; ++i) {
    const char v = which_dir(dir, 4, 6, bytes);
    seen_a += v == 'A';
    seen_b += v == 'B';
    bad += v != 'A' && v != 'B';
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  std::printf("reads during saves: A %d, B %d, mixed or unreadable %d\n", seen_a, seen_b, bad);
  CHECK(bad == 0);
  CHECK(seen_a + seen_b == 300);
  fs::remove_all(parent);
}
