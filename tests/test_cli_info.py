"""`pylm info`: JSON and text output on both real models and on a synthetic file, checked
against values computed here from the tensor table and metadata; name resolution; errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from pylm import gguf as pg
from pylm import hub
from pylm.cli import main


def run_json(capsys, *args) -> dict:
    assert main(["info", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_real_model(real_model_path, capsys):
    info = run_json(capsys, real_model_path)
    with pg.GGUFFile(real_model_path) as f:
        arch = f.architecture
        md = f.metadata
        tensors = list(f.tensors.values())
    assert info["architecture"] == arch and info["file_size"] == real_model_path.stat().st_size
    assert info["parameters"] == sum(int(np.prod(t.shape)) for t in tensors)
    assert 1e8 < info["parameters"] < 3e8  # 135M / 270M models
    for key, mkey in [("context_length", "context_length"),
                      ("embedding_length", "embedding_length"), ("block_count", "block_count"),
                      ("head_count", "attention.head_count"),
                      ("head_count_kv", "attention.head_count_kv")]:
        assert info[key] == md[f"{arch}.{mkey}"], key
    tokens = md["tokenizer.ggml.tokens"]
    assert info["vocab_size"] == len(tokens)
    assert next(t.shape for t in tensors if t.name == "token_embd.weight")[0] == len(tokens)
    hist: dict = {}
    for t in tensors:
        c, b = hist.get(t.qtype, (0, 0))
        hist[t.qtype] = (c + 1, b + int(np.prod(t.shape)) // t.block_size * t.type_size)
    assert {k: (v["count"], v["bytes"]) for k, v in info["tensor_types"].items()} == hist
    assert sum(v["count"] for v in info["tensor_types"].values()) == info["tensor_count"]
    tk = info["tokenizer"]
    assert tk["model"] == md["tokenizer.ggml.model"] and tk["pre"] == md["tokenizer.ggml.pre"]
    bos, eos = md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"]
    assert tk["bos"] == {"id": bos, "text": tokens[bos]}
    assert tk["eos"] == {"id": eos, "text": tokens[eos]}
    assert info["chat_template"] == md.get("tokenizer.chat_template")


def test_info_text_smollm2(smollm2_path, capsys):
    assert main(["info", str(smollm2_path)]) == 0
    out = capsys.readouterr().out
    for frag in ["architecture   llama", "layers         30", "heads          9 (kv 3)",
                 "vocab          49152", "tokenizer      gpt2 (pre: smollm)",
                 "1 '<|im_start|>' / 2 '<|im_end|>'", "Q4_1", "Q8_0", "F32", "<|im_start|>system"]:
        assert frag in out, frag
    assert main(["info", str(smollm2_path), "--template"]) == 0
    full = capsys.readouterr().out
    with pg.GGUFFile(smollm2_path) as f:
        for line in f.metadata["tokenizer.chat_template"].splitlines():
            assert "  " + line in full


def test_info_synthetic_template_and_missing_fields(tmp_path, capsys):
    tpl = "\n".join(f"line {i}" for i in range(20))
    md = {"general.architecture": "toy", "toy.block_count": np.uint32(2),
          "tokenizer.ggml.tokens": ["<s>", "a"], "tokenizer.ggml.bos_token_id": np.uint32(0),
          "tokenizer.chat_template": tpl}
    p = pg.write(tmp_path / "toy.gguf", md, {"w": np.zeros((2, 64), np.float32)})
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "first 8 of 20 lines" in out and "line 7" in out and "line 8" not in out
    assert "bos / eos      0 '<s>' / -" in out and "parameters     128 (32.0 bits/weight)" in out
    assert main(["info", str(p), "--template"]) == 0
    assert "line 19" in capsys.readouterr().out
    info = run_json(capsys, p)
    assert info["context_length"] is None and info["block_count"] == 2 and info["vocab_size"] == 2
    assert info["tensor_types"] == {"F32": {"count": 1, "bytes": 512, "parameters": 128}}


def test_info_known_name_via_hub(smollm2_path, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    link = cache / smollm2_path.name
    link.symlink_to(smollm2_path)
    m = hub.MODELS["smollm2"]
    (cache / (m.filename + ".sha256")).write_text(f"{m.sha256}  {smollm2_path.stat().st_size}\n")
    monkeypatch.setenv("PYLM_CACHE", str(cache))
    monkeypatch.setenv("PYLM_PIP_ARGS", f"--no-index --find-links {tmp_path}")
    assert run_json(capsys, "smollm2")["path"] == str(link)


def test_info_errors(tmp_path, capsys):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + bytes(60))
    assert main(["info", str(bad)]) == 2
    assert "bad magic b'GGML'" in capsys.readouterr().err
    assert main(["info", "no-such-model"]) == 2
    assert "'no-such-model'" in capsys.readouterr().err


def test_info_subprocess(smollm2_path):
    # Run from tests/ so the child imports the same pylm as this process (the installed one, or
    # the in-place build through PYTHONPATH) — never the checkout's uncompiled ./pylm.
    r = subprocess.run([sys.executable, "-m", "pylm.cli", "info", str(smollm2_path), "--json"],
                       capture_output=True, text=True, timeout=120, check=False,
                       cwd=Path(__file__).resolve().parent)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["architecture"] == "llama"
