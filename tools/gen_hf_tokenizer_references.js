#!/usr/bin/env node
// Writes the Hugging Face tokenizer.json test data under tests/data/, with Hugging Face's own
// `tokenizers` library (its Node.js binding: the Rust implementation) as the independent
// reference for lmshrink's reader, encoder and decoder:
//
// - three small byte-level BPE tokenizers shaped like the families' own files, their merges
//   learnt here from the bundled stories (plus a few lines of other scripts):
//     hf_llama3_style.json  Llama 3's pre-tokeniser regex, ignore_merges, <|begin_of_text|>...
//     hf_qwen2_style.json   NFC normaliser, Qwen2's regex (single digits), <|im_start|>...
//     hf_smollm_style.json  Digits(individual) then GPT-2's ByteLevel regex, specials at 0-2
// - hf_tokenizer_cases.json: texts, and the ids and decoded text the library gives for each
//   (decoded: null when it is the text; decoded_skip_special: null when it is decoded).
//
//   npm install --prefix /tmp/hfref tokenizers@0.23.2
//   NODE_PATH=/tmp/hfref/node_modules node tools/gen_hf_tokenizer_references.js
//
// Run from the repository root. Deterministic: the merges depend only on the bundled text.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

const OUT = 'tests/data/';
const LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// GPT-2's bytes_to_unicode.
function byteChars() {
  const bs = [];
  for (let b = 33; b <= 126; ++b) bs.push(b);
  for (let b = 161; b <= 172; ++b) bs.push(b);
  for (let b = 174; b <= 255; ++b) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; ++b)
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); ++n; }
  const table = new Array(256);
  bs.forEach((b, i) => { table[b] = String.fromCodePoint(cs[i]); });
  return table;
}
const BYTE = byteChars();
const toByteLevel = (s) => Array.from(Buffer.from(s, 'utf8')).map((b) => BYTE[b]).join('');

function stories() {
  const text = fs.readFileSync('examples/data/tinystories_valid_first1000.txt', 'utf8');
  return text.split('<|endoftext|>').map((s) => s.trim()).filter((s) => s.length);
}

// A plain BPE trainer: the most frequent adjacent pair of the words' symbols, merged, 
// `merges` times (ties: the first pair seen).
function train(words, merges) {
  const counts = new Map();
  for (const w of words) counts.set(w, (counts.get(w) || 0) + 1);
  const entries = [...counts.entries()].map(([w, c]) => [Array.from(w), c]);
  const vocab = new Map();
  BYTE.forEach((ch) => { if (!vocab.has(ch)) vocab.set(ch, vocab.size); });
  const out = [];
  for (let m = 0; m < merges; ++m) {
    const pairs = new Map();
    for (const [syms, c] of entries)
      for (let i = 0; i + 1 < syms.length; ++i) {
        const k = syms[i] + '\u0000' + syms[i + 1];
        pairs.set(k, (pairs.get(k) || 0) + c);
      }
    let best = null, bestCount = 1;
    for (const [k, c] of pairs) if (c > bestCount) { best = k; bestCount = c; }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    out.push([a, b]);
    if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
    for (const e of entries) {
      const s = e[0], t = [];
      for (let i = 0; i < s.length; ++i) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { t.push(a + b); ++i; } else t.push(s[i]);
      }
      e[0] = t;
    }
  }
  return { vocab, merges: out };
}

function jsRegex(pattern) {
  // JavaScript has no (?i:...) groups: the contractions are spelt out in both cases.
  const contractions = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]";
  return new RegExp(pattern.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", contractions), 'gu');
}

function tokenizerJson(kind, corpus) {
  const regex = kind === 'llama3' ? LLAMA3 : kind === 'qwen2' ? QWEN2 : null;
  const words = [];
  const gpt2 = jsRegex("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
  for (const text of corpus) {
    const pieces = regex ? text.match(jsRegex(regex)) : text.split(/(\p{N})/u).flatMap((p) => p.match(gpt2) || []);
    for (const p of pieces || []) words.push(toByteLevel(kind === 'qwen2' ? p.normalize('NFC') : p));
  }
  const { vocab, merges } = train(words, 900);
  const specials = kind === 'llama3' ? ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>', '<|eot_id|>']
                 : kind === 'qwen2' ? ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
                 : ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  let vocabObj = {};
  let added = [];
  if (kind === 'smollm') {  // the specials are ids 0-2 of the vocabulary itself
    specials.forEach((s, i) => { vocabObj[s] = i; added.push({ id: i, content: s }); });
    for (const [t, id] of vocab) vocabObj[t] = id + specials.length;
  } else {
    for (const [t, id] of vocab) vocabObj[t] = id;
    specials.forEach((s, i) => added.push({ id: vocab.size + i, content: s }));
  }
  if (kind === 'qwen2')  // an added token that is not special: split out, decoded as text
    added.push({ id: vocab.size + specials.length, content: '<tool_call>', special: false });
  const addedTokens = added.map((a) => ({ id: a.id, content: a.content, single_word: false, lstrip: false,
                                           rstrip: false, normalized: false, special: a.special !== false }));
  const byteLevel = (useRegex) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
  const split = (p) => ({ type: 'Split', pattern: { Regex: p }, behavior: 'Isolated', invert: false });
  const pre = kind === 'smollm'
    ? { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] }
    : { type: 'Sequence', pretokenizers: [split(regex), byteLevel(false)] };
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens,
    normalizer: kind === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: pre,
    post_processor: kind === 'llama3'
      ? { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                 { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [vocab.size], tokens: ['<|begin_of_text|>'] } } }
      : byteLevel(false),
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, ignore_merges: kind === 'llama3', vocab: vocabObj,
             merges: kind === 'qwen2' ? merges.map(([a, b]) => a + ' ' + b) : merges },
  };
}

function rng(seed) {  // mulberry32
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function texts(all) {
  const rand = rng(20231);
  const pool = [...'abcdefghijklmnopqrstuvwxyzABCXYZ', ...'0123456789', ...".,;:!?'\"-()[]", ' ', ' ', ' ', '  ',
                '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', "'s", "'S", "'ll", "'LL", "'Re", "'ve", "'d", "'m", "'t",
                ...'éèüßñçøåœ', ...'日本語中文字한국', '🙂', '👩\u200d💻', '𝔘', '١٢٣', 'Ⅻ', '½', 'e\u0301', 'A\u030a',
                '\u212b', '\u1100\u1161\u11a8', '\u0344', 'ſ', '<|endoftext|>', '<|im_start|>', '<|begin_of_text|>',
                '<|eot_id|>', '<tool_call>', '<|im_end', '\x00', '\x7f', '\u0301', '\u2581'];
  const fixed = ['', ' ', '  ', '\n', '\r\n', ' a', 'a ', 'Hello world', "it's", "IT'S", "we'll", "She'd", 'x\'sy',
                 '1234567', '12 345', 'a1b22c333d4444', '3.14159', '\n\n\n', ' \n ', '  \r\n\r\n  x', 'x   y',
                 '<|endoftext|>', 'a<|endoftext|>b', '<|im_start|>user\nhi<|im_end|>', '<|begin_of_text|>Hi',
                 '<tool_call>x', 'e\u0301t\u00e9', '\u212b\u212b', '\u1100\u1161\u11a8', '한국어', 'Ω\u0342\u0345',
                 "it'\u017f", "IT'\u017fx", "'\u017fabc", '1999 123 4567 89', '12345678901234567890', 'x2024y', '١٢٣٤٥'];
  const out = all.slice(700, 715).concat(fixed);
  while (out.length < 230) {
    const n = 1 + Math.floor(rand() * 24);
    let s = '';
    for (let i = 0; i < n; ++i) s += pool[Math.floor(rand() * pool.length)];
    out.push(s);
  }
  return out;
}

async function main() {
  const all = stories();
  const extra = ['Grüße aus Köln, ça va? Ñandú, naïve café.', '数字 1234567890 and 日本語のテキスト, 한국어 문장.',
                 "I'LL SAY IT'S 2024!\r\nThe cat's toys, 3 of them.\n\n",
                 // numbers, so that digit runs have merges and the digit rules show in the ids
                 'In 1999 there were 123 cats, 4567 dogs and 89 birds: 2024, 365, 100, 12, 7, 1234567.'];
  const corpus = all.slice(0, 400).concat(extra, extra, extra, Array(40).fill(extra[3]));
  const cases = { texts: texts(all), models: {} };
  for (const kind of ['llama3', 'qwen2', 'smollm']) {
    const json = JSON.stringify(tokenizerJson(kind, corpus));
    fs.writeFileSync(OUT + `hf_${kind}_style.json`, json + '\n');
    const tok = Tokenizer.fromString(json);
    const ids = [], decoded = [], decodedSkip = [];
    for (const t of cases.texts) {
      const e = await tok.encode(t, null, { addSpecialTokens: false });
      ids.push(e.getIds());
      // Stored only where they differ from the text, and from the text decoded, to keep it small.
      const d = await tok.decode(e.getIds(), false), ds = await tok.decode(e.getIds(), true);
      decoded.push(d === t ? null : d);
      decodedSkip.push(ds === d ? null : ds);
    }
    const withSpecial = [];
    for (const t of cases.texts.slice(0, 40)) withSpecial.push((await tok.encode(t, null, { addSpecialTokens: true })).getIds());
    // The pre-tokeniser's pieces alone (byte-level strings), which show its rules even where
    // the merges would give the same ids either way. NFC first, as the normaliser does.
    const pre = tok.getPreTokenizer();
    const preTokens = cases.texts.map((t) => pre.preTokenizeString(kind === 'qwen2' ? t.normalize('NFC') : t).map((p) => p[0]));
    cases.models[kind] = { ids, decoded, decoded_skip_special: decodedSkip, with_post_processor: withSpecial,
                           pre_tokens: preTokens };
  }
  fs.writeFileSync(OUT + 'hf_tokenizer_cases.json', JSON.stringify(cases) + '\n');
}

main();
