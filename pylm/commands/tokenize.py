"""`pylm tokenize -m MODEL "text"`: token ids and pieces of a text, with the model's tokenizer."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("tokenize", help="print the token ids and pieces of a text",
                              description="Tokenize text with the tokenizer of a GGUF model.")
    p.add_argument("-m", "--model", required=True, help="path of a GGUF file")
    p.add_argument("text", nargs="?", help="text to tokenize (default: read stdin)")
    p.add_argument("--add-special", action="store_true", help="add BOS/EOS as the model does")
    p.add_argument("--parse-special", action="store_true",
                   help="recognize control tokens such as <|im_start|> in the text")
    p.add_argument("--ids-only", action="store_true", help="print only the ids, on one line")
    p.add_argument("--json", action="store_true", help="print JSON: ids and pieces")
    p.set_defaults(func=run)


def run(args) -> int:
    from pylm.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(args.model)
    text = args.text if args.text is not None else sys.stdin.read()
    ids = tok.encode(text, add_special=args.add_special, parse_special=args.parse_special)
    if args.ids_only:
        print(" ".join(map(str, ids)))
    elif args.json:
        print(json.dumps({"ids": ids, "pieces": [tok.token_to_piece(i) for i in ids]}, ensure_ascii=False))
    else:
        for i in ids:
            print(f"{i:>8}  {tok.id_to_bytes(i).decode('utf-8', 'backslashreplace')!r}")
        print(f"{len(ids)} tokens, {len(text.encode('utf-8'))} bytes")
    return 0
