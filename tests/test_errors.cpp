#include <catch2/catch.hpp>
#include <lmshrink/lmshrink.hpp>
#include <lmshrink/models/llama/llama2c.hpp>

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

TEST_CASE("error messages carry a greppable id, the function, expected and given", "[errors]") {
  lmshrink::LowRankSparseLinear<float> layer(512, 768, 16);
  lmshrink::RowMatrix<float> x(3, 1024), y(3, 512);
  auto cache = layer.make_cache(3);
  REQUIRE_THROWS_WITH(
      layer.forward(x, y, cache),
      Equals("[lmshrink.shape] LowRankSparseLinear::forward: x has 1024 columns but "
             "in_features is 768"));
}

TEST_CASE("every error kind derives from lmshrink::error and std::runtime_error", "[errors]") {
  const auto check = [](auto thrower, const char* expected) {
    REQUIRE_THROWS_AS(thrower(), lmshrink::error);
    REQUIRE_THROWS_AS(thrower(), std::runtime_error);
    REQUIRE_THROWS_WITH(thrower(), Equals(expected));
  };
  check([] { lmshrink::detail::fail<lmshrink::shape_error>("f", "x"); }, "[lmshrink.shape] f: x");
  check([] { lmshrink::detail::fail<lmshrink::value_error>("f", "x"); }, "[lmshrink.value] f: x");
  check([] { lmshrink::detail::fail<lmshrink::numeric_error>("f", "x"); },
        "[lmshrink.numeric] f: x");
  check([] { lmshrink::detail::fail<lmshrink::io_error>("f", "x"); }, "[lmshrink.io] f: x");
  check([] { lmshrink::detail::fail<lmshrink::format_error>("f", "x"); },
        "[lmshrink.format] f: x");
  check([] { lmshrink::detail::fail<lmshrink::state_error>("f", "x"); }, "[lmshrink.state] f: x");
  REQUIRE_THROWS_AS(lmshrink::rank_from_ratio(2.0, 4, 4), lmshrink::value_error);
  REQUIRE_THROWS_AS(lmshrink::models::llama::read_llama2c("/nonexistent/model.bin"), lmshrink::io_error);
}

TEST_CASE("version macros agree", "[errors]") {
  REQUIRE(LMSHRINK_VERSION == LMSHRINK_VERSION_MAJOR * 10000 + LMSHRINK_VERSION_MINOR * 100 +
                                  LMSHRINK_VERSION_PATCH);
  REQUIRE_THAT(LMSHRINK_VERSION_STRING, Equals("0.1.0"));
}
