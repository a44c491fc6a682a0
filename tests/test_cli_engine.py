"""`pylm generate`, `pylm chat` and `pylm bench` on the real SmolLM2 model."""

import io
import json
import sys

from pylm.cli import main


def test_generate(smollm2_path, capsys):
    assert main(["generate", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "3", "-t", "2"]) == 0
    assert capsys.readouterr().out.startswith(" Paris")


def test_chat_reads_turns_until_empty_line(smollm2_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 2+2?\n\n"))
    assert main(["chat", "-m", str(smollm2_path), "-n", "12", "-t", "2"]) == 0
    out = capsys.readouterr().out
    assert "4" in out


def test_bench_json(smollm2_path, capsys):
    assert main(["bench", "-m", str(smollm2_path), "-p", "16", "-n", "4", "-r", "2", "-t", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("pp16", "tg4"):
        assert res[key]["mean"] > 0 and len(res[key]["runs"]) == 2


def test_generate_missing_model_is_clear_error(tmp_path, capsys):
    assert main(["generate", "-m", str(tmp_path / "missing.gguf"), "-p", "x"]) == 2
    assert "missing.gguf" in capsys.readouterr().err


def test_generate_no_repack_same_text(smollm2_path, capsys):
    """--no-repack keeps the mapped GGUF rows; greedy text is the same (the bits are)."""
    args = ["generate", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "8", "-t", "2"]
    assert main(args) == 0
    packed = capsys.readouterr().out
    assert main(args + ["--no-repack"]) == 0
    assert capsys.readouterr().out == packed and packed.startswith(" Paris")
