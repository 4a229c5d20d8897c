#pragma once
#if !defined(LMSHRINK_INSIDE_LIBRARY) && !defined(LMSHRINK_TESTING_INTERNALS)
#error "lmshrink/detail/ is internal: include the public header instead (lmshrink/files.hpp, lmshrink/random.hpp, ...; docs/design.md)"
#endif
// A directory replaced as a whole: readers see the old set of files or the new one, never a mix,
// whatever happens to the writing process (docs/errors.md, "Directory saves").
//
// Writer (replace_directory_atomically):
//  1. The new set is written into a sibling "<dir>.tmp.<pid>.<n>", locked (flock) by its writer.
//     Entries of the old directory that the caller keeps (a tokenizer beside the weights) are
//     hard-linked into it (copied when the file system refuses links).
//  2. Every file and the new directory are fsync'ed.
//  3. Linux: renameat2(RENAME_EXCHANGE) swaps the two directories in one step. Elsewhere, or on a
//     file system that refuses the exchange: "<dir>" is renamed to "<dir>.old.<pid>.<n>", then
//     the new directory to "<dir>"; a kill between the two leaves no "<dir>", and the next read
//     or save recovers the old version (below).
//  4. The parent is fsync'ed and the old set removed.
// Every save first removes the "<dir>.tmp.*" and "<dir>.old.*" left by writers that are gone
// (whose lock it can take), after renaming a lone "<dir>.old.*" back when "<dir>" is missing.
//
// Reader (read_directory_consistently): holds the directory open while it reads, and reads again
// when the path names another directory at the end than at the start (a save swapped it in
// between). When "<dir>" is missing but an interrupted two-rename save left "<dir>.old.*", it
// reads that one.

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "../config.hpp"
#include "../errors.hpp"
#include "atomic_file.hpp"

#if !defined(_WIN32)
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#endif

LMSHRINK_NAMESPACE_BEGIN
namespace detail {

struct DirectoryParts {
  std::filesystem::path parent;
  std::string base;
};

/// The absolute parent and the name of `dir`, through a symlink to a directory (the target is
/// replaced, not the link). io_error when `dir` has no name of its own ("/", "").
inline DirectoryParts directory_parts(const char* where, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (dir.empty()) fail<io_error>(where, "the output directory is empty");
  fs::path p = fs::absolute(fs::path(dir), ec).lexically_normal();
  if (ec) fail<io_error>(where, "cannot resolve '", dir, "' (", ec.message(), ")");
  if (p.has_filename() == false && p.has_parent_path()) p = p.parent_path();  // a trailing '/'
  if (fs::is_symlink(p, ec)) {
    p = fs::canonical(p, ec);
    if (ec) fail<io_error>(where, "cannot resolve the link '", dir, "' (", ec.message(), ")");
  }
  const std::string base = p.filename().string();
  if (base.empty() || base == "." || base == ".." || p == p.root_path())
    fail<io_error>(where, "'", dir, "' cannot be replaced as a whole; a directory with a parent "
                   "was expected");
  return {p.parent_path(), base};
}

#if !defined(_WIN32)

inline bool starts_with(const std::string& s, const std::string& head) {
  return s.size() > head.size() && s.compare(0, head.size(), head) == 0;
}

/// An exclusive, non-blocking flock on directory `path`; -1 when it is held elsewhere or absent.
inline int try_lock_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Whether `s` is "<digits>.<digits>", the pid and counter of unique_suffix().
inline bool is_unique_suffix(const std::string& s) {
  const auto dot = s.find('.');
  if (dot == 0 || dot == std::string::npos || dot + 1 == s.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (i != dot && (s[i] < '0' || s[i] > '9')) return false;
  return true;
}

/// The siblings "<base>.tmp.<pid>.<n>" or "<base>.old.<pid>.<n>" of `parent`: exactly the names
/// this file makes, so that a user's "<base>.tmp.backup" is never touched.
inline std::vector<std::string> directory_siblings(const std::string& parent, const std::string& base,
                                                   const char* kind) {
  std::vector<std::string> names;
  DIR* d = ::opendir(parent.c_str());
  if (d == nullptr) return names;
  const std::string prefix = base + kind;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (starts_with(name, prefix) && is_unique_suffix(name.substr(prefix.size()))) names.push_back(name);
  }
  ::closedir(d);
  return names;
}

/// What a dead writer left: renames a lone "<base>.old.*" back when "<base>" is missing, then
/// removes the unlocked "<base>.tmp.*" and "<base>.old.*". Best effort; never throws.
inline void recover_directory(const std::string& parent, const std::string& base) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string dir = parent + "/" + base;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 && errno == ENOENT) {
    for (const std::string& name : directory_siblings(parent, base, ".old.")) {
      const int fd = try_lock_directory(parent + "/" + name);
      if (fd < 0) continue;
      const bool back = ::rename((parent + "/" + name).c_str(), dir.c_str()) == 0;
      ::close(fd);
      if (back) break;
    }
  }
  for (const char* kind : {".tmp.", ".old."})
    for (const std::string& name : directory_siblings(parent, base, kind)) {
      const std::string path = parent + "/" + name;
      struct stat s {};
      if (::lstat(path.c_str(), &s) != 0) continue;
      if (!S_ISDIR(s.st_mode)) continue;  // a file "<base>.tmp.*" belongs to write_file_atomically
      const int fd = try_lock_directory(path);
      if (fd < 0) continue;  // its writer is alive
      fs::remove_all(path, ec);
      ::close(fd);
    }
}

/// Links (or copies) `from` into `to`, directories recursively, symlinks as links.
inline void carry_over(const char* where, const std::filesystem::path& from, const std::filesystem::path& to) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(from, ec);
  if (fs::is_symlink(st)) {
    fs::copy_symlink(from, to, ec);
  } else if (fs::is_directory(st)) {
    fs::create_directory(to, ec);
    if (!ec)
      for (const auto& entry : fs::directory_iterator(from, ec))
        carry_over(where, entry.path(), to / entry.path().filename());
  } else if (fs::is_regular_file(st)) {
    fs::create_hard_link(from, to, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(from, to, ec);
    }
  } else {
    return;  // sockets, pipes and devices stay behind
  }
  if (ec) fail<io_error>(where, "cannot keep '", from.string(), "' in the new directory (", ec.message(), ")");
}

inline void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

inline void fsync_tree(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec)) {
    std::error_code e2;
    if (entry.is_symlink(e2)) continue;
    fsync_path(entry.path().string(), entry.is_directory(e2));
  }
  fsync_path(dir.string(), true);
}

/// Swaps two directories in one step; false when the system or file system cannot.
inline bool exchange_directories(const std::string& a, const std::string& b) {
#if defined(__linux__) && defined(SYS_renameat2)
  constexpr unsigned int rename_exchange = 1u << 1;  // RENAME_EXCHANGE
  return ::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), rename_exchange) == 0;
#else
  (void)a;
  (void)b;
  errno = ENOSYS;
  return false;
#endif
}

inline std::string unique_suffix() {
  static std::atomic<unsigned long> counter{0};
  return std::to_string(static_cast<long>(::getpid())) + "." + std::to_string(counter.fetch_add(1));
}

#endif

/// A directory's next version, written in a sibling and swapped in as a whole by commit() (see
/// the top of this file). Until then `dir` is untouched. Destroyed without commit (an exception,
/// a failed write), the staging directory is removed and nothing is left beside `dir`.
///
///   detail::StagedDirectory next("write_hf", "out/model");
///   write_safetensors(st, next.path() + "/model.safetensors");
///   next.commit([](const std::string& name) { return name == "tokenizer.json"; });
class StagedDirectory {
 public:
  StagedDirectory(const char* where, const std::string& dir) : where_(where), dir_(dir) {
    namespace fs = std::filesystem;
    const DirectoryParts parts = directory_parts(where, dir);
    std::error_code ec;
    fs::create_directories(parts.parent, ec);
    if (ec)
      fail<io_error>(where, "cannot create the directory '", parts.parent.string(), "' to hold '", dir, "' (",
                     ec.message(), ")");
    parent_ = parts.parent.string();
    target_ = (parts.parent / parts.base).string();
    base_ = parts.base;
    const fs::file_status status = fs::status(target_, ec);
    if (fs::exists(status) && !fs::is_directory(status))
      fail<io_error>(where, "'", dir, "' exists and is not a directory");
#if defined(_WIN32)
    // No atomic directory swap: files are written in place, each atomically.
    fs::create_directories(target_, ec);
    if (ec) fail<io_error>(where, "cannot create the directory '", dir, "' (", ec.message(), ")");
    path_ = target_;
#else
    recover_directory(parent_, base_);
    path_ = parent_ + "/" + base_ + ".tmp." + unique_suffix();
    if (::mkdir(path_.c_str(), 0777) != 0)
      fail<io_error>(where, "cannot create a directory beside '", dir, "' (", std::strerror(errno), ")");
    lock_ = try_lock_directory(path_);  // held until the swap: tells other savers this one lives
#endif
  }
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  ~StagedDirectory() { abandon(); }

  /// Where the new version is written.
  const std::string& path() const { return path_; }

  /// Carries the entries of the old version for which `keep(name)` is true (as hard links, unless
  /// the new version already has that name), flushes everything to disk and swaps the new version
  /// in. io_error, with `dir` unchanged, when that fails.
  void commit(const std::function<bool(const std::string&)>& keep) {
    namespace fs = std::filesystem;
    if (committed_) fail<state_error>(where_, "'", dir_, "' was already committed");
    std::error_code ec;
#if defined(_WIN32)
    (void)keep;  // the files were written in place
    committed_ = true;
#else
    try {
      if (fs::is_directory(target_, ec))
        for (const auto& entry : fs::directory_iterator(target_)) {
          const std::string name = entry.path().filename().string();
          if (keep(name) && !fs::exists(fs::symlink_status(fs::path(path_) / name, ec)))
            carry_over(where_, entry.path(), fs::path(path_) / name);
        }
      fsync_tree(path_);
    } catch (const std::filesystem::filesystem_error& e) {
      abandon();
      fail<io_error>(where_, "cannot write '", dir_, "' (", e.what(), "); it was left unchanged");
    } catch (...) {
      abandon();
      throw;
    }
    std::string old;  // where the old version ends up
    if (!fs::exists(target_, ec) && ::rename(path_.c_str(), target_.c_str()) == 0) {
      // there was no old version
    } else if (exchange_directories(path_, target_)) {
      old = path_;
    } else {
      old = parent_ + "/" + base_ + ".old." + unique_suffix();
      if (::rename(target_.c_str(), old.c_str()) != 0) {
        const int why = errno;
        abandon();
        fail<io_error>(where_, "cannot replace '", dir_, "' (", std::strerror(why), "); it was left unchanged");
      }
      if (::rename(path_.c_str(), target_.c_str()) != 0) {
        const int why = errno;
        ::rename(old.c_str(), target_.c_str());
        abandon();
        fail<io_error>(where_, "cannot replace '", dir_, "' (", std::strerror(why), "); it was left unchanged");
      }
    }
    committed_ = true;
    fsync_path(parent_, true);
    if (!old.empty()) fs::remove_all(old, ec);
    if (lock_ >= 0) ::close(lock_);
    lock_ = -1;
#endif
  }

 private:
  void abandon() {
#if !defined(_WIN32)
    if (committed_) return;
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    if (lock_ >= 0) ::close(lock_);
    lock_ = -1;
    committed_ = true;  // nothing more to do
#endif
  }

  const char* where_;
  std::string dir_, parent_, base_, target_, path_;
  int lock_ = -1;
  bool committed_ = false;
};

/// Replaces directory `dir` by the files `fill(new_dir)` writes into an empty directory, as one
/// step (StagedDirectory). Entries of the old `dir` for which `keep(name)` is true are carried
/// into the new one as hard links (so a kept file is never written in place); everything else of
/// the old version is gone after the save. On any failure (including `fill` throwing) `dir` is
/// left as it was and nothing is left beside it.
inline void replace_directory_atomically(const char* where, const std::string& dir,
                                         const std::function<bool(const std::string&)>& keep,
                                         const std::function<void(const std::string&)>& fill) {
  StagedDirectory next(where, dir);
  try {
    fill(next.path());
  } catch (const std::filesystem::filesystem_error& e) {
    fail<io_error>(where, "cannot write '", dir, "' (", e.what(), "); it was left unchanged");
  }
  next.commit(keep);
}

/// Runs `read(path)` on directory `dir` so that everything it reads comes from one version of
/// the directory: again when a save swapped the directory while it read (at most 16 times).
/// When `dir` is missing and an interrupted save left "<dir>.old.*", that one is read.
template <class ReadFn>
auto read_directory_consistently(const char* where, const std::string& dir, ReadFn&& read)
    -> decltype(read(dir)) {
#if defined(_WIN32)
  (void)where;
  return read(dir);
#else
  std::string path = dir;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT) {
    try {
      const DirectoryParts parts = directory_parts(where, dir);
      for (const std::string& name : directory_siblings(parts.parent.string(), parts.base, ".old."))
        path = (parts.parent / name).string();
    } catch (const error&) {
    }
  }
  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return read(path);  // the reader reports what is wrong with the path
    struct stat held {};
    ::fstat(fd, &held);
    const auto same_as_held = [&] {
      struct stat now {};
      return ::stat(path.c_str(), &now) == 0 && now.st_dev == held.st_dev && now.st_ino == held.st_ino;
    };
    try {
      auto result = read(path);
      const bool same = same_as_held();
      ::close(fd);
      if (same || attempt >= 16) return result;
    } catch (const error&) {
      const bool same = same_as_held();
      ::close(fd);
      if (same || attempt >= 16) throw;
    }
  }
#endif
}

}  // namespace detail
LMSHRINK_NAMESPACE_END
