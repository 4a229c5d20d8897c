#!/usr/bin/env python3
"""Writes tests/data/nfc_cases.json: 600 strings dense in combining marks, Hangul jamo and
characters with canonical decompositions, and their NFC form by Python's unicodedata (the
reference for lmshrink's detail::nfc; the tables are from the same Unicode version).

    python3 tools/gen_nfc_cases.py
"""
import json
import random
import unicodedata

rng = random.Random(20231)
decomposable = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and unicodedata.decomposition(chr(cp))
                and not unicodedata.decomposition(chr(cp)).startswith("<")]
marks = [cp for cp in range(0x300, 0x20000) if unicodedata.combining(chr(cp))]
jamo = list(range(0x1100, 0x1113)) + list(range(0x1161, 0x1176)) + list(range(0x11A8, 0x11C3))
base = [ord(c) for c in "aAeEiOuUnNcCsSzZ oy\u0391\u03b1\u0415\u0430\u05d0\u0627\u0915\u3042\u304b"] + [0xAC00, 0xAC01, 0xD7A3]
texts = []
for _ in range(600):
    pools = [base, marks, decomposable, jamo, base, marks]
    s = "".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(1, 12)))
    texts.append(s)
cases = {"unicode": unicodedata.unidata_version, "texts": texts, "nfc": [unicodedata.normalize("NFC", s) for s in texts]}
with open("tests/data/nfc_cases.json", "w", encoding="utf-8") as f:
    json.dump(cases, f, ensure_ascii=True, separators=(",", ":"))
    f.write("\n")
