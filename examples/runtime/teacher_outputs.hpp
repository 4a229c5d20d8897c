#pragma once
// The teacher's outputs for a batch of token sequences, computed once and read by every student
// that trains on the same sequences. The students of one run see the same windows in the same
// order, and a second epoch sees them again; without this cache each of them runs the teacher's
// forward on every batch.
//
// An entry is an exact copy of a teacher net's logits (and, when asked, its block outputs) for
// one token batch, so a student reads the same bits whether it computed them or not: results
// do not depend on which student ran first, on the schedule or on the cache's size. Entries are
// keyed by the tokens themselves (a hash, then an exact comparison). The cache holds at most
// `max_bytes` of outputs; past that the oldest entries no one is reading make room, and when
// none can, the caller's own net answers without keeping a copy. A student that asks for an
// entry another one is computing waits for it instead of computing it twice.
//
//   examples::TeacherOutputCache cache(1 << 30);
//   // in each student's loss, with its own teacher net over the shard's batch·n tokens:
//   const auto out = cache.outputs(*teacher_net, tokens, batch * n, /*blocks=*/n_layers);
//   out.logits(); out.block(l);

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../models/registry.hpp"

namespace examples {

class TeacherOutputCache {
 public:
  using Mat = lmshrink::models::Mat;

  /// max_bytes: the outputs it may keep (0: none, every call runs the caller's net).
  explicit TeacherOutputCache(std::int64_t max_bytes) : max_bytes_(max_bytes) {
    if (max_bytes < 0)
      lmshrink::fail<lmshrink::value_error>("TeacherOutputCache", "the size limit must be >= 0 bytes, got ", max_bytes, " bytes");
  }

  /// One token batch's outputs, copied from a teacher net.
  struct Entry {
    std::vector<int> tokens;
    Mat logits;
    std::vector<Mat> blocks;
  };

  /// Outputs for one token batch, valid while the handle lives: from the cache, or from the
  /// caller's net (which then holds them until its next forward).
  class Outputs {
   public:
    const Mat& logits() const { return entry_ ? entry_->logits : *net_logits_; }
    /// The teacher's block l output, l < the `blocks` asked for.
    const Mat& block(int l) const { return entry_ ? entry_->blocks[std::size_t(l)] : net_->block_output(l); }
    /// It came from the cache: another caller, or an earlier batch, computed it.
    bool hit() const { return hit_; }

   private:
    friend class TeacherOutputCache;
    std::shared_ptr<const Entry> entry_;
    const lmshrink::models::Net* net_ = nullptr;
    const Mat* net_logits_ = nullptr;
    bool hit_ = false;
  };

  /// The outputs of `teacher` (a net over exactly `count` tokens, batch·n) for `tokens`, with
  /// its first `blocks` block outputs. `teacher` runs only when no entry has them.
  Outputs outputs(lmshrink::models::Net& teacher, const int* tokens, std::int64_t count, int blocks);

  struct Stats {
    std::int64_t hits = 0, misses = 0, entries = 0, bytes = 0, evicted = 0;
  };
  Stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    Stats s = stats_;
    s.entries = std::int64_t(slots_.size());
    s.bytes = bytes_;
    return s;
  }
  std::int64_t max_bytes() const { return max_bytes_; }

  /// The bytes one entry holds: logits and block outputs (float) for `count` tokens.
  static std::int64_t entry_bytes(std::int64_t count, std::int64_t vocab, int blocks, std::int64_t dim) {
    return 4 * count * (vocab + std::int64_t(blocks) * dim);
  }

 private:
  struct Slot {
    std::shared_ptr<Entry> entry;
    std::int64_t bytes = 0, serial = 0;
    int blocks = 0;
    bool ready = false;
  };
  using Slots = std::unordered_multimap<std::uint64_t, std::shared_ptr<Slot>>;

  static std::uint64_t hash(const int* tokens, std::int64_t count) {
    std::uint64_t h = 0xcbf29ce484222325ull ^ std::uint64_t(count);  // FNV-1a over the tokens
    for (std::int64_t i = 0; i < count; ++i) {
      h ^= std::uint32_t(tokens[i]);
      h *= 0x100000001b3ull;
    }
    return h;
  }

  /// Drops the oldest ready entries no one reads until `bytes` more fit; false when they cannot.
  bool make_room(std::int64_t bytes) {
    if (bytes > max_bytes_) return false;
    while (bytes_ + bytes > max_bytes_) {
      auto oldest = slots_.end();
      for (auto it = slots_.begin(); it != slots_.end(); ++it)
        if (it->second->ready && it->second->entry.use_count() == 1 &&
            (oldest == slots_.end() || it->second->serial < oldest->second->serial))
          oldest = it;
      if (oldest == slots_.end()) return false;
      bytes_ -= oldest->second->bytes;
      slots_.erase(oldest);
      ++stats_.evicted;
    }
    return true;
  }

  /// Removes `slot` (pending, or ready and counted) if it is still there; wakes the waiters.
  void remove(std::uint64_t key, const std::shared_ptr<Slot>& slot) {
    const auto range = slots_.equal_range(key);
    for (auto it = range.first; it != range.second; ++it)
      if (it->second == slot) {
        if (slot->ready) bytes_ -= slot->bytes;
        slots_.erase(it);
        break;
      }
    ready_.notify_all();
  }

  const std::int64_t max_bytes_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  Slots slots_;
  std::int64_t bytes_ = 0, serial_ = 0;
  Stats stats_;
};

inline TeacherOutputCache::Outputs TeacherOutputCache::outputs(lmshrink::models::Net& teacher, const int* tokens,
                                                               std::int64_t count, int blocks) {
  if (count < 1 || blocks < 0)
    lmshrink::fail<lmshrink::value_error>("TeacherOutputCache::outputs", "expected >= 1 tokens and >= 0 blocks, got ",
                                          count, " tokens and ", blocks, " blocks");
  // A cache that keeps nothing has nothing to find: no hash, no search.
  const std::uint64_t key = max_bytes_ > 0 ? hash(tokens, count) : 0;
  Outputs out;
  std::shared_ptr<Slot> mine;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    for (bool look = max_bytes_ > 0; look;) {
      look = false;
      std::shared_ptr<Slot> fewer;  // the same tokens kept with fewer blocks than asked
      const auto range = slots_.equal_range(key);
      for (auto it = range.first; it != range.second; ++it) {
        const std::shared_ptr<Slot> slot = it->second;
        if (std::int64_t(slot->entry->tokens.size()) != count ||
            !std::equal(slot->entry->tokens.begin(), slot->entry->tokens.end(), tokens))
          continue;
        if (!slot->ready) {  // another caller computes it: wait, then look again
          ready_.wait(lock);  // the map may have changed: the iterators are stale
          look = true;
          break;
        } else if (slot->blocks >= blocks) {
          ++stats_.hits;
          out.entry_ = slot->entry;
          out.hit_ = true;
          return out;
        } else {
          fewer = slot;
        }
      }
      if (!look && fewer && fewer->entry.use_count() == 1) remove(key, fewer);  // replaced below
    }
    ++stats_.misses;
    if (max_bytes_ > 0) {
      mine = std::make_shared<Slot>();
      mine->entry = std::make_shared<Entry>();
      mine->entry->tokens.assign(tokens, tokens + count);
      mine->blocks = blocks;
      mine->serial = serial_++;
      slots_.emplace(key, mine);
    }
  }
  // The forward runs outside the lock; callers asking for the same tokens wait on `ready_`.
  const Mat* logits = nullptr;
  try {
    logits = &teacher.forward(tokens);
    if (logits->rows() != count)
      lmshrink::fail<lmshrink::shape_error>("TeacherOutputCache::outputs", "expected a teacher net over ", count,
                                            " tokens, got one giving ", logits->rows(), " rows of logits");
  } catch (...) {
    if (mine) {
      std::lock_guard<std::mutex> lock(mutex_);
      remove(key, mine);
    }
    throw;
  }
  out.net_ = &teacher;
  out.net_logits_ = logits;
  if (!mine) return out;
  const std::int64_t dim = blocks > 0 ? teacher.block_output(0).cols() : 0;
  const std::int64_t bytes = entry_bytes(count, logits->cols(), blocks, dim);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!make_room(bytes)) {  // full of entries being read, or larger than the limit
      remove(key, mine);
      return out;
    }
    bytes_ += bytes;  // reserved now; the copy below is this caller's alone until `ready`
    mine->bytes = bytes;
  }
  Entry& e = *mine->entry;
  try {
    e.logits = *logits;
    e.blocks.resize(std::size_t(blocks));
    for (int l = 0; l < blocks; ++l) e.blocks[std::size_t(l)] = teacher.block_output(l);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    bytes_ -= bytes;
    mine->bytes = 0;
    remove(key, mine);
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    mine->ready = true;
    ready_.notify_all();
  }
  out.entry_ = mine->entry;
  return out;
}

}  // namespace examples
