#!/usr/bin/python3
"""Writes the SentencePiece test data under tests/data/ with Google's own sentencepiece library
(Debian: `apt-get install python3-sentencepiece python3-protobuf`), the independent reference
for lmshrink's reader, encoder and decoder of tokenizer.model files:

- `spm_llama_style.model`: a small BPE model trained here the way Llama 2 and TinyLlama's
  tokenizer was (identity normalizer, byte fallback, digits split, whitespace kept as typed),
  with one user-defined symbol and one extra control symbol so that every piece type occurs;
- `spm_llama_style_unused.model`: the same with every 7th merged piece marked UNUSED, which the
  encoder must split back into the pieces it was merged from;
- `sentencepiece_cases.json`: texts, and the ids and decoded text each model gives them:
  tok512.model (stories260K's, bundled in examples/data) and the two models above;
- invalid UTF-8 texts as hex, which JSON cannot carry.

    /usr/bin/python3 tools/gen_sentencepiece_references.py

Run from the repository root. Training is deterministic for a given library version and input;
the files were made with sentencepiece 0.1.97 (Debian 12).
"""
import io
import json
import random

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

STORIES = "examples/data/tinystories_valid_first1000.txt"
OUT = "tests/data/"


def stories():
    text = open(STORIES, encoding="utf-8").read()
    return [s.strip() for s in text.split("<|endoftext|>") if s.strip()]


def train_llama_style(corpus):
    extra = ["Grüße aus Köln, ça va? Ñandú, smörgåsbord, naïve café.",
             "数字 1234567890 and 日本語のテキスト, 한국어 문장, Ελληνικά, русский текст.",
             "Tabs\tand  double  spaces, <|user|> asked: why?"]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus[:600] + extra * 20), model_writer=model,
        model_type="bpe", vocab_size=700, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, allow_whitespace_only_pieces=True, character_coverage=0.9995,
        user_defined_symbols=["<|user|>"], control_symbols=["<|pad|>"], num_threads=1,
        max_sentence_length=1 << 16, minloglevel=2)
    return model.getvalue()


def edge_texts(rng):
    pool = (list("abcdefghijklmnopqrstuvwxyzABCXYZ") + list("0123456789") + list(".,;:!?'\"-()[]") +
            [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2581", "\u2581\u2581"] +
            list("éèüßñçøåœ") + list("日本語中文字한국") + ["🙂", "👩\u200d💻", "𝔘"] +
            ["<s>", "</s>", "<unk>", "<0x41>", "<|user|>", "<|pad|>", "\x00", "\x7f", "\u0301"])
    fixed = ["", " ", "  ", "\n", "\t", " a", "a ", " a ", "  leading", "trailing  ", "a  b   c",
             "Once upon a time", "once upon a time", "ONCE UPON A TIME", "123", "1,234,567.89",
             "Lily's dog", "don't", "\u2581already\u2581escaped", "<|user|>", "x<|user|>y",
             "<|user|><|user|>", " <|user|> ", "<s>Hi</s>", "a\u0301", "\u00e9", "🙂🙂🙂",
             "日本語", "\r\n\r\n", "  \n  ", "word\x00word"]
    out = list(fixed)
    while len(out) < 200:
        n = rng.randint(1, 24)
        out.append("".join(rng.choice(pool) for _ in range(n)))
    return out


def invalid_texts(rng):
    pieces = [b"a", b" ", b"\xff", b"\xc3", b"\xc3\xa9", b"\xe6\x97", b"\xe6\x97\xa5", b"\xf0\x9f\x99",
              b"\xed\xa0\x80", b"\xc0\xaf", b"\x80", b"\xf4\x90\x80\x80", b"story"]
    out = [b"\xff", b"a\xffb", b" \x80 ", b"\xc3", b"\xe6\x97\xa5\xe6"]
    while len(out) < 30:
        out.append(b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))))
    return out


def main():
    rng = random.Random(20231)
    all_stories = stories()
    small = train_llama_style(all_stories)
    open(OUT + "spm_llama_style.model", "wb").write(small)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(small)
    merged = [p for p in proto.pieces if p.type == 1 and len(p.piece) > 1]
    for p in merged[::7]:
        p.type = 5  # UNUSED
    unused = proto.SerializeToString()
    open(OUT + "spm_llama_style_unused.model", "wb").write(unused)
    models = {"tok512": spm.SentencePieceProcessor(model_file="examples/data/tok512.model"),
              "llama_style": spm.SentencePieceProcessor(model_proto=small),
              "llama_style_unused": spm.SentencePieceProcessor(model_proto=unused)}
    texts = all_stories[700:730] + edge_texts(rng)
    byte_texts = invalid_texts(rng)
    cases = {"texts": texts, "byte_texts_hex": [b.hex() for b in byte_texts], "models": {}}
    for name, sp in models.items():
        ids = [sp.encode(t) for t in texts]
        byte_ids = [sp.encode(b) for b in byte_texts]
        # Decoding: the encodings, then random id sequences that mix every piece type.
        sequences = [[rng.randrange(sp.get_piece_size()) for _ in range(rng.randint(1, 12))]
                     for _ in range(60)]
        sequences += [[1, 300, 2], [3 + 0xE6, 3 + 0x97, 3 + 0xA5], [3 + 0xE6, 3 + 0x97], [0, 0, 5]]
        cases["models"][name] = {
            "ids": ids, "byte_ids": byte_ids,
            "decoded": [sp.decode(s) for s in ids],  # the encodings decoded
            "sequences": sequences, "decoded_sequences": [sp.decode(s) for s in sequences]}
    with open(OUT + "sentencepiece_cases.json", "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
