// md5 against the RFC 1321 test suite, duplicate keys and the markup and duplicate filters on
// crafted documents.
#include <catch2/catch.hpp>
#include <lmshrink/data_cleaning.hpp>
#include <string>

using lmshrink::Md5;
using lmshrink::Verdict;

TEST_CASE("md5 matches the RFC 1321 test suite", "[md5]") {
  const std::pair<const char*, const char*> suite[] = {
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"a", "0cc175b9c0f1b6a831c399e269772661"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
      {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
      {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
       "d174ab98d277d9f5a5611c2c9f419d9f"},
      {"1234567890123456789012345678901234567890123456789012345678901234567890123456789"
       "0",
       "57edf4a22be3c955ac49da2e2107b67a"},
  };
  for (const auto& [text, digest] : suite) {
    CAPTURE(text);
    REQUIRE(Md5::hex(Md5::digest(text)) == digest);
  }
}

TEST_CASE("md5 in pieces equals md5 in one call, across block boundaries", "[md5]") {
  // A million 'a's (a classic test vector), fed in uneven chunks.
  const std::string million(1000000, 'a');
  Md5 m;
  std::size_t at = 0, step = 1;
  while (at < million.size()) {
    const std::size_t take = std::min(step, million.size() - at);
    m.update(million.data() + at, take);
    at += take;
    step = step * 3 % 127 + 1;
  }
  REQUIRE(Md5::hex(m.finish()) == "7707d6ae4e027c70eea2a935c2296f21");
  // 55, 56 and 64 bytes: the padding boundaries.
  for (std::size_t n : {55u, 56u, 63u, 64u, 65u, 119u, 120u}) {
    const std::string s(n, 'q');
    Md5 a;
    a.update(s.data(), n / 2);
    a.update(s.data() + n / 2, n - n / 2);
    REQUIRE(a.finish() == Md5::digest(s));
  }
}

TEST_CASE("the duplicate key ignores punctuation, spacing and middle words", "[cleaning]") {
  const auto key = lmshrink::duplicate_key;
  const std::string base = "Once upon a time, there was a little dog named Max. He liked to play ball.";
  // Only punctuation and spacing differ.
  REQUIRE(key(base) == key("Once upon a time there was a little dog named Max!! He liked to play ball"));
  REQUIRE(key(base) == key("  Once   upon a time,\nthere was a little dog named Max. He liked to play ball..."));
  // A middle word replaced by one of the same length.
  REQUIRE(key(base) == key("Once upon a time, there was a little cat named Max. He liked to play ball."));
  // A middle word of another length changes the length.
  REQUIRE_FALSE(key(base) == key("Once upon a time, there was a little puppy named Max. He liked to play ball."));
  // The first or last four words differ.
  REQUIRE_FALSE(key(base) == key("Twice upon a time, there was a little dog named Max. He liked to play ball."));
  REQUIRE_FALSE(key(base) == key("Once upon a time, there was a little dog named Max. He liked to kick ball."));
  // Case is kept.
  REQUIRE_FALSE(key(base) == key("once upon a time, there was a little dog named Max. He liked to play ball."));
}

TEST_CASE("the key counts code points, not bytes, and keeps non-ASCII punctuation", "[cleaning]") {
  const auto k = lmshrink::duplicate_key("Café — naïve");  // 4 + 1 (em dash) + 5 code points
  REQUIRE(k.length == 10);
  REQUIRE(lmshrink::words_without_punctuation("Hello, world! «Bonjour»").size() == 3);
  REQUIRE(lmshrink::duplicate_key("日本語 の 文章").length == 6);
  REQUIRE(lmshrink::duplicate_key("").length == 0);
  REQUIRE(lmshrink::duplicate_key("... !!! ,,,").length == 0);
}

TEST_CASE("markup is detected and comparisons are not", "[cleaning]") {
  for (const char* doc : {"Hello <b>world</b>", "<p>Once upon a time</p>", "a line<br/>break",
                          "text <br /> more", "<a href=\"x.html\">link</a>",
                          "<!-- a comment --> story", "<!DOCTYPE html><html>", "<DIV CLASS=x>",
                          "end </div>"}) {
    CAPTURE(doc);
    REQUIRE(lmshrink::has_markup(doc));
  }
  for (const char* doc : {"if a < b and b > c", "1 <2 and 3> 2", "x<y", "a <- b", "<", "<3 love",
                          "I <3 you > all", "Tom said < hello", "<< and >>", "a <b",
                          "email <at> is not a tag?"}) {
    CAPTURE(doc);
    // "<at>" has the shape of a tag, so it is flagged: the filter errs towards dropping.
    REQUIRE(lmshrink::has_markup(doc) == (std::string(doc) == "email <at> is not a tag?"));
  }
}

TEST_CASE("the streaming filter keeps the first of each near-duplicate and counts why",
          "[cleaning]") {
  lmshrink::DocumentFilter f;
  REQUIRE(f.add("Lily found a red ball in the park. She was very happy.") == Verdict::keep);
  REQUIRE(f.add("Lily found a red ball in the park! She was very happy!") == Verdict::duplicate);
  REQUIRE(f.add("Lily found a red ball in the yard. She was very happy.") == Verdict::duplicate);
  REQUIRE(f.add("Lily found a <b>red</b> ball.") == Verdict::markup);
  REQUIRE(f.add("?!...") == Verdict::empty);
  REQUIRE(f.add("Tom had a blue kite. It flew high.") == Verdict::keep);
  REQUIRE(f.add("Ünïcödé story: the café was open.") == Verdict::keep);
  REQUIRE(f.add("Ünïcödé story - the café was open!") == Verdict::duplicate);
  const auto& c = f.counts();
  REQUIRE(c.seen == 8);
  REQUIRE(c.kept == 3);
  REQUIRE(c.duplicates == 3);
  REQUIRE(c.markup == 1);
  REQUIRE(c.empty == 1);
  REQUIRE(c.kept + c.duplicates + c.markup + c.empty == c.seen);

  lmshrink::FilterOptions keep_all;
  keep_all.drop_duplicates = keep_all.drop_markup = keep_all.drop_empty = false;
  lmshrink::DocumentFilter g(keep_all);
  REQUIRE(g.add("<b>x</b>") == Verdict::keep);
  REQUIRE(g.add("<b>x</b>") == Verdict::keep);
  REQUIRE(g.counts().kept == 2);
}
