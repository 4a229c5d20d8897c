#pragma once
// A lmshrink::ThreadTeam on std::thread, to check the team contract without OpenMP.

#include <condition_variable>
#include <lmshrink/compact.hpp>
#include <mutex>
#include <thread>
#include <vector>

namespace test {

// A ThreadTeam on std::thread, to check the team contract without OpenMP: run() starts `count`
// threads and joins them; barrier() is a generation-counting barrier over all of them.
struct StdThreadTeam {
  static inline std::mutex mutex;
  static inline std::condition_variable cv;
  static inline int expected = 0, arrived = 0, generation = 0;

  static void run(int threads, void (*body)(void*, int, int), void* context) {
    expected = threads;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(body, context, t, threads);
    for (auto& th : pool) th.join();
  }
  static void barrier() {
    std::unique_lock<std::mutex> lock(mutex);
    const int gen = generation;
    if (++arrived == expected) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [gen] { return generation != gen; });
    }
  }
  static lmshrink::ThreadTeam team() { return {&run, &barrier}; }
};

}  // namespace test
