// The llama2.c tokenizer: the bundled tok512.bin (the held-out stream is in test_decoder.cpp),
// decoding the reference greedy sample, atomic round trip and bad files. GPT-2's byte-level BPE:
// published ids, pre-tokenisation against an independent regex engine's output, merges against
// a naive reference, round trips of arbitrary bytes, bad files. The strict JSON reader.
#define LMSHRINK_TESTING_INTERNALS  // the internal JSON reader is tested here too
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <lmshrink/detail/json.hpp>
#include <lmshrink/random.hpp>
#include <lmshrink/io/gpt2_tokenizer.hpp>
#include <lmshrink/io/tokenizer.hpp>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_helpers.hpp"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("tok512.bin reads as the README describes", "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin", 512);
  REQUIRE(tok.vocab_size() == 512);
  REQUIRE(tok.max_token_length() == 7);
  REQUIRE(tok.piece(1) == "\n<s>\n");
  REQUIRE(tok.piece(2) == "\n</s>\n");
  REQUIRE(tok.piece(3) == "<0x00>");
  REQUIRE(tok.piece(258) == "<0xFF>");
  REQUIRE(tok.find(" ") == 410);
  REQUIRE(tok.score(259) == 0.0f);
  REQUIRE(tok.score(511) == -252.0f);
}

TEST_CASE("decoding the reference greedy ids gives run.c's text", "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  const auto ids = test::read_u16(LMSHRINK_DATA_DIR "/stories260K_greedy_t0.ids.u16");
  REQUIRE(ids.size() == 257);
  REQUIRE(ids[0] == lmshrink::Tokenizer::kBos);
  const std::string text = read_all(LMSHRINK_DATA_DIR "/stories260K_greedy_t0.txt");
  REQUIRE(tok.decode(ids) + "\n" == text);
  // Encoding a short text and decoding it back.
  const auto e = tok.encode("Once upon a time, Lily saw a café.", true, true);
  REQUIRE(e.front() == 1);
  REQUIRE(e.back() == 2);
  REQUIRE(tok.decode(std::vector<int>(e.begin(), e.end() - 1)) == "Once upon a time, Lily saw a café.");
  REQUIRE(tok.encode("", true, false) == std::vector<int>{1});
}

TEST_CASE("a tokenizer written and read back is identical", "[tokenizer]") {
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  const std::string path = LMSHRINK_TEST_TMP "/tok512_roundtrip.bin";
  lmshrink::write_tokenizer(tok, path);
  REQUIRE(read_all(path) == read_all(LMSHRINK_DATA_DIR "/tok512.bin"));
  std::remove(path.c_str());
}

TEST_CASE("missing, truncated and foreign tokenizer files are clear errors", "[tokenizer][errors]") {
  REQUIRE_THROWS_AS(lmshrink::read_tokenizer(LMSHRINK_TEST_TMP "/missing.bin"), lmshrink::io_error);
  const std::string good = read_all(LMSHRINK_DATA_DIR "/tok512.bin");
  const std::string path = LMSHRINK_TEST_TMP "/tok_bad.bin";
  write_bytes(path, good.substr(0, good.size() - 3));
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer(path),
                      Catch::Contains("[lmshrink.format] read_tokenizer") && Catch::Contains("truncated"));
  write_bytes(path, good.substr(0, 2));
  REQUIRE_THROWS_AS(lmshrink::read_tokenizer(path), lmshrink::format_error);
  // A model checkpoint is not a tokenizer.
  REQUIRE_THROWS_AS(lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/stories260K.bin"), lmshrink::format_error);
  REQUIRE_THROWS_WITH(lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin", 32000),
                      Catch::Contains("has 512 tokens but the model's vocabulary has 32000"));
  std::remove(path.c_str());
  const auto tok = lmshrink::read_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin");
  REQUIRE_THROWS_AS(tok.decode(1, 512), lmshrink::value_error);
}

// ---- GPT-2 ----------------------------------------------------------------------------------

namespace {

const lmshrink::Gpt2Tokenizer& gpt2() {
  static const lmshrink::Gpt2Tokenizer tok = lmshrink::read_gpt2_tokenizer(
      LMSHRINK_DATA_DIR "/gpt2_encoder.json", LMSHRINK_DATA_DIR "/gpt2_vocab.bpe");
  return tok;
}

using Merges = std::vector<std::pair<std::string, std::string>>;

/// GPT-2's encoder.py merge loop on strings, written for clarity: the reference for encode().
std::vector<int> naive_bpe(const lmshrink::Gpt2Tokenizer& tok, const Merges& merges,
                           const std::map<std::pair<std::string, std::string>, std::size_t>& rank,
                           const std::map<std::string, int>& id, std::string_view text) {
  std::vector<int> out;
  for (std::string_view piece : lmshrink::Gpt2Tokenizer::pre_tokenize(text)) {
    std::vector<std::string> word;
    for (char c : piece) word.emplace_back(1, c);
    for (;;) {
      std::size_t best = merges.size();
      for (std::size_t i = 0; i + 1 < word.size(); ++i) {
        const auto it = rank.find({word[i], word[i + 1]});
        if (it != rank.end()) best = std::min(best, it->second);
      }
      if (best == merges.size()) break;
      std::vector<std::string> next;
      for (std::size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == merges[best].first &&
            word[i + 1] == merges[best].second) {
          next.push_back(word[i] + word[i + 1]);
          i += 2;
        } else {
          next.push_back(word[i++]);
        }
      }
      word = next;
    }
    for (const auto& w : word) out.push_back(id.at(w));
  }
  (void)tok;
  return out;
}

Merges gpt2_merges_as_bytes() {
  const std::string text = read_all(LMSHRINK_DATA_DIR "/gpt2_vocab.bpe");
  Merges merges;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);  // #version
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto sp = line.find(' ');
    merges.emplace_back(
        lmshrink::detail::gpt2_file_token_bytes("test", "vocab.bpe", line.substr(0, sp), "part"),
        lmshrink::detail::gpt2_file_token_bytes("test", "vocab.bpe", line.substr(sp + 1), "part"));
  }
  return merges;
}

std::string utf8(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

TEST_CASE("GPT-2's tokenizer gives the published ids", "[gpt2_tokenizer]") {
  const auto& tok = gpt2();
  REQUIRE(tok.vocab_size() == 50257);
  REQUIRE(tok.merge_count() == 50000);
  REQUIRE(tok.end_of_text() == 50256);
  REQUIRE(tok.token_bytes(50256) == "<|endoftext|>");
  REQUIRE(tok.token_bytes(220) == " ");
  // The ids of gpt-3-encoder's own tests (Encoder.test.js), and "Hello world".
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"", {}},
      {" ", {220}},
      {"\t", {197}},
      {"This is some text", {1212, 318, 617, 2420}},
      {"indivisible", {521, 452, 12843}},
      {"hello \xF0\x9F\x91\x8B world \xF0\x9F\x8C\x8D", {31373, 50169, 233, 995, 12520, 234, 235}},
      {"toString constructor hasOwnProperty valueOf",
       {1462, 10100, 23772, 468, 23858, 21746, 1988, 5189}},
      {"Hello world", {15496, 995}},
  };
  for (const auto& [text, ids] : cases) {
    INFO(text);
    REQUIRE(tok.encode(text) == ids);
    REQUIRE(tok.decode(ids) == text);
  }
}

TEST_CASE("GPT-2 pre-tokenisation matches a regex engine with Unicode classes", "[gpt2_tokenizer]") {
  // Expected pieces from Python's re with the pattern's classes spelled out as code point ranges
  // from unicodedata (Unicode 14.0.0) and White_Space for \s.
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"I'm here  now\n\nok 123abc",
       {"I", "'m", " here", " ", " now", "\n", "\n", "ok", " 123", "abc"}},
      {"I'M DON'T we'll they're you've 'd",
       {"I", "'", "M", " DON", "'", "T", " we", "'ll", " they", "'re", " you", "'ve", " '", "d"}},
      {"  \t x\n y   ", {"  \t", " x", "\n", " y", "   "}},
      {u8"na\u00efve caf\u00e9 \u2014 3\u00bd \u0663\u0664 \u00b2",
       {u8"na\u00efve", u8" caf\u00e9", u8" \u2014", u8" 3\u00bd", u8" \u0663\u0664", u8" \u00b2"}},
      {u8"\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u3067\u3059\u3002",
       {u8"\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", u8"\u3001", u8"\u3067\u3059", u8"\u3002"}},
      {u8"a\u00a0b\u3000c\u2028d", {"a", u8"\u00a0", "b", u8"\u3000", "c", u8"\u2028", "d"}},
      {"x  ", {"x", "  "}},
      {u8"e\u0301 combining", {"e", u8"\u0301", " combining"}},
      {u8"emoji \U0001F44B\U0001F3FD!!  ?", {"emoji", u8" \U0001F44B\U0001F3FD!!", " ", " ?"}},
      {"'''s", {"'''", "s"}},
      {"1,000.50$", {"1", ",", "000", ".", "50", "$"}},
      {u8" \u0085 z", {u8" \u0085", " z"}},
  };
  for (const auto& [text, pieces] : cases) {
    INFO(text);
    const auto got = lmshrink::Gpt2Tokenizer::pre_tokenize(text);
    REQUIRE(std::vector<std::string>(got.begin(), got.end()) == pieces);
  }
  // Where text stops being UTF-8 (the main job refuses held-out text that is not).
  using lmshrink::detail::first_invalid_utf8;
  REQUIRE(first_invalid_utf8(u8"abc \u00e9\u65e5\U0001F44B") == std::string_view::npos);
  REQUIRE(first_invalid_utf8("a\xff") == 1);
  REQUIRE(first_invalid_utf8("ab\xE2\x82") == 2);          // truncated sequence
  REQUIRE(first_invalid_utf8("\xED\xA0\x80") == 0);        // an encoded surrogate
  REQUIRE(first_invalid_utf8("\xC0\xAF") == 0);            // overlong
  REQUIRE(first_invalid_utf8("\xF4\x90\x80\x80") == 0);    // beyond U+10FFFF
  // Bytes that are not UTF-8 are "other" characters, one byte each.
  const auto bad = lmshrink::Gpt2Tokenizer::pre_tokenize("a\xff\xfe b \xC3 \xE2\x82");
  REQUIRE(std::vector<std::string>(bad.begin(), bad.end()) ==
          std::vector<std::string>{"a", "\xff\xfe", " b", " \xC3", " \xE2\x82"});
}

TEST_CASE("GPT-2 encoding equals the naive merge loop and round-trips any bytes",
          "[gpt2_tokenizer]") {
  const auto& tok = gpt2();
  const Merges merges = gpt2_merges_as_bytes();
  REQUIRE(merges.size() == 50000);
  std::map<std::pair<std::string, std::string>, std::size_t> rank;
  for (std::size_t r = merges.size(); r-- > 0;) rank[merges[r]] = r;
  std::map<std::string, int> id;
  for (int i = 0; i < tok.vocab_size(); ++i) id.emplace(tok.token_bytes(i), i);

  const std::string stories = read_all(LMSHRINK_DATA_DIR "/tinystories_valid_first1000.txt");
  const std::string text = stories.substr(0, 6000) +
                           u8" \u00c9t\u00e9 na\u00efve \u65e5\u672c\u8a9e aaaaaaaa 1234567 'll"
                           u8" \U0001F44B\U0001F3FD \t\n\n  x";
  const std::vector<int> ids = tok.encode(text);
  REQUIRE(ids == naive_bpe(tok, merges, rank, id, text));
  REQUIRE(tok.decode(ids) == text);
  REQUIRE(ids.size() < text.size() / 3);  // English text: about 4 bytes per token
  // Random byte strings (mostly not UTF-8) and random code points of the first planes.
  lmshrink::SplitMix64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string s;
    const int n = int(rng.next() % 40);
    for (int i = 0; i < n; ++i) {
      if (trial % 2 == 0) {
        s += char(rng.next() % 256);
      } else {
        std::uint32_t cp = std::uint32_t(rng.next() % 0x3400);
        if (rng.next() % 2) cp = std::uint32_t(rng.next() % 0x80);
        s += utf8(cp);
      }
    }
    INFO("trial " << trial);
    const auto e = tok.encode(s);
    REQUIRE(tok.decode(e) == s);
    REQUIRE(e == naive_bpe(tok, merges, rank, id, s));
  }
}

TEST_CASE("bad GPT-2 vocabularies and merges are clear errors", "[gpt2_tokenizer][errors]") {
  using Catch::Contains;
  REQUIRE_THROWS_AS(lmshrink::read_gpt2_tokenizer(LMSHRINK_TEST_TMP "/missing.json",
                                                  LMSHRINK_DATA_DIR "/gpt2_vocab.bpe"),
                    lmshrink::io_error);
  // A llama2.c tokenizer is not a GPT-2 vocabulary.
  REQUIRE_THROWS_WITH(lmshrink::read_gpt2_tokenizer(LMSHRINK_DATA_DIR "/tok512.bin",
                                                    LMSHRINK_DATA_DIR "/gpt2_vocab.bpe"),
                      Contains("[lmshrink.format] parse_gpt2_tokenizer") &&
                          Contains("not valid JSON"));
  // The vocabulary of the 256 byte characters (ids 0..255).
  std::string bytes_json = "{";
  for (int b = 0; b < 256; ++b) {
    std::string key;
    lmshrink::detail::json_escape(key, utf8(lmshrink::detail::gpt2_byte_char((unsigned char)b)));
    bytes_json += (b ? ", " : "") + key + ": " + std::to_string(b);
  }
  const auto parse = [](const std::string& vocab, const std::string& merges) {
    return lmshrink::parse_gpt2_tokenizer(vocab, "vocab.json", merges, "merges.txt");
  };
  const auto small = parse(bytes_json + ", \"ab\": 256}", "#version: 0.2\r\na b\r\n");
  REQUIRE(small.vocab_size() == 257);
  REQUIRE(small.encode("xabab") == std::vector<int>{int('x'), 256, 256});
  REQUIRE(small.end_of_text() == -1);
  REQUIRE_THROWS_WITH(parse("[1, 2]", ""), Contains("is an array; an object of token"));
  REQUIRE_THROWS_WITH(parse(bytes_json + ", \"ab\": 300}", ""),
                      Contains("token 'ab' has the id 300; an integer in [0, 257)"));
  REQUIRE_THROWS_WITH(parse(bytes_json + ", \"ab\": 1.5}", ""), Contains("has the id 1.5"));
  REQUIRE_THROWS_WITH(parse(bytes_json + ", \"ab\": 3}", ""), Contains("the id 3 is given to two tokens"));
  REQUIRE_THROWS_WITH(parse(bytes_json + u8", \"a\u4e00\": 256}", ""),
                      Contains("not one of GPT-2's 256 byte characters"));
  REQUIRE_THROWS_WITH(parse("{\"a\": 0}", ""), Contains("byte 0 has no token"));
  REQUIRE_THROWS_WITH(parse(bytes_json + "}", "#version: 0.2\na b c\n"),
                      Contains("merges.txt' line 2 is 'a b c'; two tokens separated by one space"));
  REQUIRE_THROWS_WITH(parse(bytes_json + "}", "ab\n"), Contains("line 1 is 'ab'"));
  REQUIRE_THROWS_WITH(parse(bytes_json + "}", "a b\n"),
                      Contains("merge 1 joins parts that are not both tokens"));
  REQUIRE_THROWS_WITH(small.decode({257}), Contains("token id 257 is outside [0, 257)"));
  REQUIRE_THROWS_AS(lmshrink::Gpt2Tokenizer().encode("x"), lmshrink::state_error);
}

TEST_CASE("the JSON reader is strict", "[json][errors]") {
  using Kind = lmshrink::detail::JsonValue::Kind;
  const auto parse = [](const std::string& text, lmshrink::detail::JsonLimits limits = {}) {
    return lmshrink::detail::parse_json("test", "x.json", text, limits);
  };
  const auto v =
      parse(R"( {"a": [1, -2.5e3, true, null, "\u00e9\ud83d\ude00\n"], "b": {}, "c": -0} )");
  REQUIRE(v.kind == Kind::object);
  const auto& a = v.find("a")->items;
  REQUIRE(a.size() == 5);
  REQUIRE((a[0].is_integer && a[0].integer == 1));
  REQUIRE((!a[1].is_integer && a[1].number == -2500.0));
  REQUIRE((a[2].kind == Kind::boolean && a[2].boolean));
  REQUIRE(a[3].kind == Kind::null);
  REQUIRE(a[4].text == u8"\u00e9\U0001F600\n");
  REQUIRE(v.find("b")->members.empty());
  REQUIRE(v.find("missing") == nullptr);
  REQUIRE(!parse("123456789012345678901234567890").is_integer);  // beyond int64: a double
  using Catch::Contains;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"a\": 1, \"a\": 2}", "has the key 'a' twice"},
      {"[1, 2,]", "where a value was expected"},
      {"{\"a\" 1}", "where ':' was expected"},
      {"01", "leading zero"},
      {"1.", "malformed number"},
      {"1e999", "out of the range of a double"},
      {"\"\\ud800\"", "unpaired surrogate"},
      {"\"\\udc00\"", "unpaired surrogate"},
      {"\"\xff\"", "invalid UTF-8"},
      {"\"\xed\xa0\x80\"", "invalid UTF-8"},  // an encoded surrogate
      {"\"a\tb\"", "control character"},
      {"\"\\x\"", "invalid escape"},
      {"[1] 2", "trailing bytes"},
      {"[1", "ends early"},
      {"tru", "unknown word"},
      {"\xEF\xBB\xBF{}", "byte order mark"},
      {"", "ends early"},
  };
  for (const auto& [text, message] : bad) {
    INFO(text);
    REQUIRE_THROWS_WITH(parse(text), Contains("[lmshrink.format] test") &&
                                         Contains("'x.json' is not valid JSON") &&
                                         Contains(message));
  }
  REQUIRE_THROWS_WITH(parse(std::string(100, '[') + std::string(100, ']')),
                      Contains("nests deeper than 64"));
  REQUIRE_THROWS_WITH(parse("[1, 2, 3, 4]", {64, 4}), Contains("more than 4 values"));
}

namespace {

/// A byte-level tokenizer: the 256 bytes, then one token per merge, merges in the given order.
std::pair<lmshrink::Gpt2Tokenizer, Merges> tokenizer_with(const Merges& merges) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, char(b));
  std::set<std::string> have(tokens.begin(), tokens.end());
  for (const auto& [a, b] : merges)
    if (have.insert(a + b).second) tokens.push_back(a + b);
  return {lmshrink::Gpt2Tokenizer(tokens, merges), merges};
}

}  // namespace

TEST_CASE("8. GPT-2 encoding of one long word is not quadratic, and equals the naive loop on "
          "any merge table",
          "[gpt2_tokenizer][hardening]") {
  // Merge tables a trained BPE never makes: pairs of a merged token ranked before the merge
  // that makes it. Encoding must still follow encoder.py's rounds (merge every occurrence of the
  // lowest-ranked pair, then look again), not merge greedily as pairs appear.
  lmshrink::SplitMix64 rng(2026);
  for (int table = 0; table < 40; ++table) {
    std::vector<std::string> pieces = {"a", "b", "c"};
    Merges merges;
    for (int m = 0; m < 12; ++m) {
      const std::string a = pieces[rng.next() % pieces.size()], b = pieces[rng.next() % pieces.size()];
      if (a.size() + b.size() > 6) continue;
      merges.emplace_back(a, b);
      pieces.push_back(a + b);
    }
    std::shuffle(merges.begin(), merges.end(), std::mt19937(unsigned(table)));  // any rank order
    // Drop merges whose parts are not tokens of this table.
    const auto [tok, kept] = [&] {
      std::set<std::string> known = {"a", "b", "c"};
      Merges ok;
      for (int pass = 0; pass < 12; ++pass)
        for (const auto& mg : merges)
          if (known.count(mg.first) && known.count(mg.second) &&
              std::find(ok.begin(), ok.end(), mg) == ok.end()) {
            ok.push_back(mg);
            known.insert(mg.first + mg.second);
          }
      return tokenizer_with(ok);
    }();
    std::map<std::pair<std::string, std::string>, std::size_t> rank;
    for (std::size_t r = kept.size(); r-- > 0;) rank[kept[r]] = r;
    std::map<std::string, int> id;
    for (int i = 0; i < tok.vocab_size(); ++i) id.emplace(tok.token_bytes(i), i);
    for (int trial = 0; trial < 20; ++trial) {
      std::string word;
      // Both ways of merging: the plain loop up to kShortPiece bytes, the heap beyond.
      const int n = 1 + int(rng.next() % (trial % 2 ? lmshrink::Gpt2Tokenizer::kShortPiece : 200));
      for (int i = 0; i < n; ++i) word += char('a' + rng.next() % 3);
      INFO("table " << table << " word " << word);
      REQUIRE(tok.encode(word) == naive_bpe(tok, kept, rank, id, word));
    }
  }
  // GPT-2's own table on long words without spaces, against the naive loop.
  const auto& gpt = gpt2();
  const Merges merges = gpt2_merges_as_bytes();
  std::map<std::pair<std::string, std::string>, std::size_t> rank;
  for (std::size_t r = merges.size(); r-- > 0;) rank[merges[r]] = r;
  std::map<std::string, int> id;
  for (int i = 0; i < gpt.vocab_size(); ++i) id.emplace(gpt.token_bytes(i), i);
  std::string word;
  for (int i = 0; i < 3000; ++i) word += "abcdefghij"[rng.next() % (i % 7 == 0 ? 10 : 3)];
  REQUIRE(gpt.encode(word) == naive_bpe(gpt, merges, rank, id, word));
  // 1 MB in one word: before, about 10 minutes (100 kB took 5.5 s).
  std::string megabyte;
  while (megabyte.size() < (1u << 20)) megabyte += "abcdefghijklmnopqrstuvwxyz0123456789"[rng.next() % 26];
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = gpt.encode(megabyte);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("1 MB in one word: %zu tokens in %.2f s\n", ids.size(), seconds);
  CHECK(gpt.decode(ids) == megabyte);
  CHECK(seconds < 20);
}

TEST_CASE("7. a merges file cannot hold more merges than the vocabulary has tokens",
          "[gpt2_tokenizer][hardening]") {
  // Kept as tests/fuzz/regressions/hf_text/merges_beyond_vocabulary (the fuzz target's layout:
  // 0x01, the vocabulary, NUL, the merges). Before, a 256 MiB merges file parsed to 4.9 GiB
  // before any check.
  const std::string input = read_all(LMSHRINK_REGRESSIONS_DIR "/hf_text/merges_beyond_vocabulary");
  REQUIRE(input.size() > 1);
  const std::size_t nul = input.find('\0');
  REQUIRE(nul != std::string::npos);
  REQUIRE_THROWS_WITH(lmshrink::parse_gpt2_tokenizer(std::string_view(input).substr(1, nul - 1), "vocab.json",
                                                     std::string_view(input).substr(nul + 1), "merges.txt"),
                      Catch::Contains("'merges.txt' has more merges than 'vocab.json' has tokens (257); every merge "
                               "makes a token"));
}
