// Fuzz target: pruner state loading. The first byte picks the pruner's options (see
// pruner_variants.hpp), the rest is the state. A state that loads must allow the next steps.
#include <cstdint>

#include "fuzz_check.hpp"
#include "pruner_variants.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::PrunerRig rig(data[0] % fuzz::kPrunerVariants);
  try {
    rig.pruner.parse_state(reinterpret_cast<const char*>(data + 1), size - 1, "fuzz");
  } catch (const lmshrink::error&) {
    return 0;
  }
  const lmshrink::Index last = rig.pruner.last_step();
  FUZZ_CHECK(last >= -1 && last <= lmshrink::Pruner<float>::kMaxStep);
  try {
    for (lmshrink::Index g = last + 1; g <= last + 3; ++g) (void)rig.pruner.after_optimizer_step(g);
    (void)rig.pruner.accounting();
  } catch (const lmshrink::error&) {
  }
  return 0;
}
