"""`pylm info MODEL`: what a GGUF file holds, read from its header only (no weights loaded).

    pylm info smollm2                  # a known name (pulled if needed) or a path
    pylm info model.gguf --json        # the same as one JSON object
    pylm info model.gguf --template    # the whole chat template
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .. import hub
from ..gguf import GGUFFile

TEMPLATE_LINES = 8


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a GGUF model", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="path to a .gguf file or a known model name")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--template", action="store_true", help="print the full chat template")
    p.set_defaults(func=run)


def _plain(v: Any) -> Any:
    """numpy values -> JSON-friendly Python values."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def model_info(f: GGUFFile) -> dict[str, Any]:
    """The summary `pylm info` prints, as a dict of plain Python values."""
    arch = f.architecture or ""
    tokens = f.get("tokenizer.ggml.tokens")

    def hp(key: str) -> Any:  # an architecture hyperparameter: "llama.block_count"
        return _plain(f.get(f"{arch}.{key}"))

    def token(key: str) -> dict[str, Any] | None:
        tid = f.get(f"tokenizer.ggml.{key}_token_id")
        if tid is None:
            return None
        text = tokens[tid] if tokens is not None and 0 <= tid < len(tokens) else None
        return {"id": tid, "text": text}

    types: dict[str, dict[str, int]] = {}
    for t in f.tensors.values():
        e = types.setdefault(t.qtype, {"count": 0, "bytes": 0, "parameters": 0})
        e["count"] += 1
        e["bytes"] += t.nbytes
        e["parameters"] += t.n_elements
    n_params = sum(t.n_elements for t in f.tensors.values())
    n_bytes = sum(t.nbytes for t in f.tensors.values())
    return {
        "path": str(f.path),
        "file_size": f.file_size,
        "gguf_version": f.version,
        "architecture": f.architecture,
        "name": f.get("general.name"),
        "file_type": _plain(f.get("general.file_type")),
        "parameters": n_params,
        "bits_per_weight": round(8 * n_bytes / n_params, 3) if n_params else None,
        "context_length": hp("context_length"),
        "embedding_length": hp("embedding_length"),
        "block_count": hp("block_count"),
        "feed_forward_length": hp("feed_forward_length"),
        "head_count": hp("attention.head_count"),
        "head_count_kv": hp("attention.head_count_kv"),
        "vocab_size": len(tokens) if tokens is not None else hp("vocab_size"),
        "tensor_count": len(f.tensors),
        "tensor_bytes": n_bytes,
        "tensor_types": dict(sorted(types.items(), key=lambda kv: -kv[1]["bytes"])),
        "tokenizer": {
            "model": f.get("tokenizer.ggml.model"),
            "pre": f.get("tokenizer.ggml.pre"),
            "bos": token("bos"),
            "eos": token("eos"),
        },
        "chat_template": f.get("tokenizer.chat_template"),
    }


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else str(n)


def _tok(t: dict | None) -> str:
    return "-" if t is None else f"{t['id']} {t['text']!r}"


def format_info(info: dict[str, Any], full_template: bool = False) -> str:
    tk = info["tokenizer"]
    heads = f"{info['head_count']} (kv {info['head_count_kv']})"
    lines = [
        f"model          {info['path']} ({_size(info['file_size'])}, GGUF v{info['gguf_version']})",
        f"architecture   {info['architecture']}" + (f"  ({info['name']})" if info["name"] else ""),
        f"parameters     {_count(info['parameters'])} ({info['bits_per_weight']} bits/weight)",
        f"context        {info['context_length']}",
        f"embedding      {info['embedding_length']}",
        f"layers         {info['block_count']}",
        f"heads          {heads}",
        f"vocab          {info['vocab_size']}",
        f"tokenizer      {tk['model']} (pre: {tk['pre']})",
        f"bos / eos      {_tok(tk['bos'])} / {_tok(tk['eos'])}",
        f"tensors        {info['tensor_count']} ({_size(info['tensor_bytes'])})",
    ]
    for name, e in info["tensor_types"].items():
        lines.append(f"  {name:8s} {e['count']:5d} tensors {_size(e['bytes']):>11s}"
                     f"  {_count(e['parameters'])} params")
    tpl = info["chat_template"]
    if tpl is None:
        lines.append("chat template  none")
    else:
        tl = tpl.splitlines()
        if full_template or len(tl) <= TEMPLATE_LINES:
            lines.append(f"chat template  ({len(tl)} lines)")
            lines += ["  " + x for x in tl]
        else:
            lines.append(f"chat template  (first {TEMPLATE_LINES} of {len(tl)} lines; "
                         f"--template for all)")
            lines += ["  " + x for x in tl[:TEMPLATE_LINES]]
    return "\n".join(lines)


def run(args) -> int:
    with GGUFFile(hub.resolve(args.model)) as f:
        info = model_info(f)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        print(format_info(info, full_template=args.template))
    return 0
