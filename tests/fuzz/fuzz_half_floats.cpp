// Fuzz target: floating-point payloads. Byte 0 picks the stored dtype (F16, BF16, F32 or F64) and
// the rest is the tensor's bytes. Read as float and as double, every value returned is finite
// (or the read is refused). Written back as F16 and BF16, a value is either refused (it would be
// infinity) or comes back within half a unit in the last place of the narrower type.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <lmshrink/io/hf_checkpoint.hpp>
#include <lmshrink/io/safetensors.hpp>
#include <vector>

#include "fuzz_check.hpp"

namespace {

/// Half an ulp of `x` in a type with `mantissa` explicit bits and smallest normal 2^min_exp.
double half_ulp(double x, int mantissa, int min_exp) {
  const int e = std::max(min_exp, std::ilogb(x == 0 ? std::ldexp(1.0, min_exp) : x));
  return std::ldexp(1.0, e - mantissa - 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const lmshrink::Dtype dtypes[4] = {lmshrink::Dtype::f16, lmshrink::Dtype::bf16, lmshrink::Dtype::f32,
                                     lmshrink::Dtype::f64};
  const lmshrink::Dtype dtype = dtypes[data[0] % 4];
  const std::size_t width = lmshrink::dtype_size(dtype);
  const std::int64_t n = std::int64_t((size - 1) / width);
  lmshrink::SafeTensors st;
  st.put("x", dtype, {n}, data + 1);
  lmshrink::Vector<float> v;
  try {
    v = st.vector<float>("x", n);
    FUZZ_CHECK(v.allFinite());
  } catch (const lmshrink::error&) {
    return 0;
  }
  try {
    FUZZ_CHECK(st.vector<double>("x", n).allFinite());
  } catch (const lmshrink::error&) {
    FUZZ_CHECK(false);  // what reads as float reads as double
  }
  for (lmshrink::Dtype narrow : {lmshrink::Dtype::f16, lmshrink::Dtype::bf16}) {
    lmshrink::SafeTensors out;
    try {
      lmshrink::detail::put_vector_as(out, "y", v, narrow);
    } catch (const lmshrink::numeric_error&) {
      // Refused only when some value is beyond the narrow type's range.
      const float limit = narrow == lmshrink::Dtype::f16 ? 65520.0f : float(std::ldexp(1.0, 128) - std::ldexp(1.0, 119));
      FUZZ_CHECK(v.cwiseAbs().maxCoeff() >= limit);
      continue;
    }
    const lmshrink::Vector<float> back = out.vector<float>("y", n);
    const bool half = narrow == lmshrink::Dtype::f16;
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = v[i], y = back[i];
      FUZZ_CHECK(std::abs(x - y) <= half_ulp(std::abs(x), half ? 10 : 7, half ? -14 : -126));
    }
  }
  return 0;
}
