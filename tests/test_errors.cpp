#include <catch2/catch.hpp>
#include <lmshrink/lmshrink.hpp>
#include <lmshrink/models/llama/llama2c.hpp>
#include <sstream>
#include <string>
#include <string_view>

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

namespace {
struct Streamed {};
std::ostream& operator<<(std::ostream& out, Streamed) { return out << "<streamed>"; }
}  // namespace

TEST_CASE("a message's parts are formatted as std::ostream formats them", "[errors]") {
  char buffer[8] = "buf";
  const std::string text = "text";
  const std::string_view view = "view";
  const int values[2] = {1, 2};
  std::ostringstream expected;
  expected << "lit " << buffer << ' ' << text << view << -3 << std::size_t(7) << 2.5f << 1e-7 << true
           << Streamed{} << std::string("temporary") << values;
  CHECK(lmshrink::detail::concat("lit ", buffer, ' ', text, view, -3, std::size_t(7), 2.5f, 1e-7, true,
                                 Streamed{}, std::string("temporary"), values) == expected.str());
  CHECK(lmshrink::detail::concat().empty());
  REQUIRE_THROWS_WITH(lmshrink::fail<lmshrink::value_error>("f"), Equals("[lmshrink.value] f: "));
  REQUIRE_THROWS_WITH(lmshrink::fail<lmshrink::value_error>("f", "got ", 3, " of ", text, '\x01'),
                      Equals("[lmshrink.value] f: got 3 of text\\x01"));
}

TEST_CASE("version macros agree", "[errors]") {
  REQUIRE(LMSHRINK_VERSION == LMSHRINK_VERSION_MAJOR * 10000 + LMSHRINK_VERSION_MINOR * 100 +
                                  LMSHRINK_VERSION_PATCH);
  REQUIRE_THAT(LMSHRINK_VERSION_STRING, Equals("0.1.0"));
}
