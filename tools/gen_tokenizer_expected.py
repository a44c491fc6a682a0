#!/usr/bin/env python3
"""Writes tests/data/tokenizer_expected.json: llama.cpp's token ids for a test corpus.

The ids come from llama.cpp itself (llama-cpp-python, ``Llama(path, vocab_only=True)``), for
both real models, with and without special-token parsing. tests/test_tokenizer_exact.py checks
pylm against this file, so the suite checks exactness without llama.cpp installed; with it
installed, the test also compares against the live llama.cpp.

Usage: python tools/gen_tokenizer_expected.py [--smollm2 PATH] [--gemma3 PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

CACHE = Path(os.environ.get("PYLM_CACHE") or Path.home() / ".cache" / "pylm")

# Each entry exercises one family of pre-tokenizer / merge behaviour.
CORPUS = [
    # whitespace runs
    "   1. Definitions.", "a  b   c    d     e", "\t\tindented with tabs", "trailing spaces   ",
    "  leading spaces", "\n\n\nthree newlines", "mixed \t \n \r\n \r spaces", " ", "  ", "\n",
    "word\n\n\n\n\n\nword", "end with newline\n", "\u00a0non\u00a0breaking\u00a0", "\u3000ideographic\u3000space",
    "line\u2028separator\u2029para", "\x0b\x0cvertical tab form feed", "\x1c\x1d\x1e\x1f info separators",
    "next\u0085line", " " * 40 + "deep indent", "x" + " " * 17 + "y", "\t \t \t", " \n \n ",
    # digits
    "12345678901234567890", "3.14159 2.71828", "1,000,000.00", "year 2024, page 07",
    "\u0663\u0664\u0665 arabic-indic digits", "superscripts x\u00b2 y\u00b3 \u00bd", "roman \u216b numeral",
    "0x1F 0b1010 1e-9", "9" * 64, " 1 22 333 4444 55555",
    # contractions
    "I'm, you're, he's, we've, they'll, I'd, can't", "I'M YOU'RE HE'S WE'VE THEY'LL I'D CAN'T",
    "'s 't 're 've 'm 'll 'd", "rock'n'roll O'Neil's", "\u2019curly apostrophe\u2019s", "''quoted''",
    "don'T We'Ll", "'", "it's'", "'Re're",
    # punctuation runs
    "Wait... what?!?! (really) [sic] {x} <y> @#$%^&*", "---===+++___", "!!!???...,,,;;;::",
    "\u2192 \u2190 \u2191 \u2193 \u2026 \u00ab\u00bb \u201e\u201c \u2018\u2019", "a.b,c;d:e!f?g", "$100 \u20ac50 \u00a530 \u00a320",
    # scripts
    "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5\uff0c\u4f60\u597d\u4e16\u754c\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\u060c \u0647\u0630\u0627 \u0627\u062e\u062a\u0628\u0627\u0631.",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd! \u05d6\u05d4 \u05de\u05d1\u05d7\u05df.",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, \u092f\u0939 \u090f\u0915 \u092a\u0930\u0940\u0915\u094d\u0937\u0923 \u0939\u0948\u0964",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a.",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5! \u039e\u03b5\u03c3\u03ba\u03b5\u03c0\u03ac\u03b6\u03c9 \u03c8\u03c5\u03c7\u03bf\u03c6\u03b8\u03cc\u03c1\u03b1.",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01 \u0e19\u0e35\u0e48\u0e04\u0e37\u0e2d\u0e01\u0e32\u0e23\u0e17\u0e14\u0e2a\u0e2d\u0e1a",
    "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0 \u0532\u0561\u0580\u0565\u0582 \u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd \u09a8\u09ae\u09b8\u09cd\u0995\u09be\u09b0",
    "Mixed: English, \u0420\u0443\u0441\u0441\u043a\u0438\u0439, \u4e2d\u6587, \u0627\u0644\u0639\u0631\u0628\u064a\u0629 in one line",
    # emoji
    "\U0001f600\U0001f603\U0001f604", "\U0001f44d\U0001f3fd \U0001f44b\U0001f3ff \u270c\U0001f3fb",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family", "\U0001f3f3\ufe0f\u200d\U0001f308 flag",
    "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5 flags", "\u2764\ufe0f \u2728 \u2615 emoji text", "a\U0001f600b",
    # combining marks
    "e\u0301 n\u0303 a\u0308 o\u0302", "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307lgo text",
    "\u00e9 vs e\u0301", "\u1112\u1161\u11ab jamo", "\u0915\u094d\u200d\u0937 virama zwj",
    # control and unusual codepoints
    "\x00\x01\x02 nul soh stx", "\x07bell\x08backspace\x7fdel", "zero\u200bwidth", "\u200e\u200f bidi",
    "\ufeffBOM start", "private \ue000\uf8ff use", "max \U0010fffd plane", "unassigned \u0378\u0379",
    "unicode 15: \U0001e030 \U00031350 \U0002ebf0", "replacement \ufffd char", "\x80\x9f C1 controls",
    # code
    "def f(x):\n    return x**2 + 1  # square\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"key": [1, 2.5, "three"], "nested": {"a": null}}', "$ ls -la | grep '.py' && echo \"done\"",
    '<div class="x">Hi</div>', "https://example.com/path?q=1&x=2#frag user@mail.org",
    "for(i=0;i<n;i++){a[i]+=b[i]*c;}", "x = {'a': 1, \"b\": [2, 3]}\r\n",
    # newlines and tabs
    "line1\nline2\r\nline3\rline4", "a\n\n\nb", "\t", "col1\tcol2\t\tcol4", "  \n  \n", "\r\n\r\n",
    # long pieces (heap merge path)
    "a" * 300, "ab" * 120, "Lorem" * 40, "QmFzZTY0IGVuY29kZWQgc3RyaW5nIHdpdGhvdXQgc3BhY2Vz" * 4,
    "supercalifragilisticexpialidocious-antidisestablishmentarianism", "\U0001f600" * 30, "\u4e2d" * 50,
    # special-token text
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "x<|im_end|>y",
    "<|im_start|><|im_start|>", "<|im_start", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos>", "</s> <b>bold</b> <i>it</i>", "<table><tr><td>1</td></tr></table>",
    "\n\n\n\n spaces   and tabs\t\t\t", "<unused0>[multimodal]<start_of_image>", "<pad><unk><mask>",
    "<filename>a.py<file_sep>", "<<|im_end|>>", "<|im_end|><|im_end|>",
    # mixed
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! 1234 + 5678 = 6912.",
    "Hello, world! How's it going? \u00bfQu\u00e9 tal? \u00c7a va. \u3053\u3093\u306b\u3061\u306f\u3002 \U0001f44b",
    "",
]

CASES = [(False, False), (False, True), (True, False)]  # (add_special, parse_special)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smollm2", default=str(CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gemma3", default=str(CACHE / "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "tokenizer_expected.json"))
    args = ap.parse_args()
    import llama_cpp

    out = {"generator": "tools/gen_tokenizer_expected.py", "llama_cpp_python": llama_cpp.__version__,
           "corpus": CORPUS, "cases": [list(c) for c in CASES], "models": {}}
    for name, path in (("smollm2", args.smollm2), ("gemma3", args.gemma3)):
        llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
        ids = []
        for text in CORPUS:
            row = []
            for add_special, parse_special in CASES:
                row.append(llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special))
            ids.append(row)
        out["models"][name] = {"file": os.path.basename(path), "ids": ids}
        print(f"{name}: {len(CORPUS)} texts x {len(CASES)} cases")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
