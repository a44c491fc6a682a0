"""BPE trainer: the worked example, a Python reference trainer, round trips, GGUF export."""

from __future__ import annotations

import collections

import pytest

from pylm import _core
from pylm.tokenizer import Tokenizer, train_bpe
from pylm.tokenizer.trainer import BYTE_ALPHABET

WORDS = [" low"] * 5 + [" lower"] * 2 + [" newest"] * 6


def test_worked_example_pair_counts_and_first_merge():
    tr = _core.BpeTrainer("gpt2")
    tr.add_texts(WORDS)
    tr.start()
    counts = tr.pair_counts()
    for (a, b), n in {("l", "o"): 7, ("o", "w"): 7, ("w", "e"): 8, ("e", "r"): 2, ("n", "e"): 6,
                      ("e", "w"): 6, ("e", "s"): 6, ("s", "t"): 6, (" ", "l"): 7, (" ", "n"): 6}.items():
        assert counts[(a.encode(), b.encode())] == n, (a, b)
    assert len(counts) == 10
    assert tr.step(1, 1) == 1
    assert tr.merges == [(ord("w"), ord("e"))]
    # after the merge the counts around "we" are updated incrementally
    counts = tr.pair_counts()
    assert (b"w", b"e") not in counts and (b"e", b"w") not in counts
    assert counts[(b"o", b"we")] == 2 and counts[(b"we", b"r")] == 2
    assert counts[(b"e", b"we")] == 6 and counts[(b"we", b"s")] == 6
    assert counts[(b"o", b"w")] == 5 and counts[(b"n", b"e")] == 6


def ref_train(words: list[bytes], n_merges: int, min_count: int = 2) -> list[tuple[bytes, bytes]]:
    """Naive BPE trainer: recount all pairs every step; ties -> smallest (left, right) bytes."""
    seqs = collections.Counter(tuple(bytes([b]) for b in w) for w in words)
    merges = []
    for _ in range(n_merges):
        counts = collections.Counter()
        for seq, c in seqs.items():
            for i in range(len(seq) - 1):
                counts[(seq[i], seq[i + 1])] += c
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if counts[best] < min_count:
            break
        merges.append(best)
        new = collections.Counter()
        for seq, c in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            new[tuple(out)] += c
        seqs = new
    return merges


CORPUS = [
    "the quick brown fox jumps over the lazy dog; the dog sleeps, the fox runs.",
    "lower lowest newer newest wider widest low low low",
    "aaaa bbbb abab baba aaaa abab",
    "hello hello hello world worlds wordy 123 1234 12345",
    "ünïcödé wörds ünd ümläüts, 中文中文 中文字",
] * 3


def test_merges_match_reference_trainer():
    words = [p for t in CORPUS for p in _core.tok_pretokenize("gpt2", t)]
    want = ref_train(words, 60)
    tok = train_bpe(CORPUS, vocab_size=256 + 60, pre="gpt2")
    got = [(bytes(BYTE_ALPHABET.index(c) for c in a), bytes(BYTE_ALPHABET.index(c) for c in b))
           for a, b in tok.merges]
    assert got == want


def test_trained_tokenizer_round_trip_and_compresses():
    tok = train_bpe(CORPUS, vocab_size=400, pre="gpt2", special_tokens=["<|endoftext|>"])
    assert tok.n_vocab <= 400 and tok.bos_id == 0 and tok.eos_id == 0
    for text in CORPUS + ["unseen: ✓ 🙂 zzz", "<|endoftext|> after"]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
    assert len(tok.encode(CORPUS[0])) < len(CORPUS[0].encode()) // 2
    assert tok.encode("<|endoftext|>", parse_special=True) == [0]


def test_save_load_and_gguf_metadata(tmp_path):
    tok = train_bpe(CORPUS, vocab_size=330, pre="smollm", special_tokens=["<|endoftext|>", "<pad>"])
    meta = tok.to_gguf_metadata()
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm"
    assert len(meta["tokenizer.ggml.tokens"]) == tok.n_vocab == len(meta["tokenizer.ggml.token_type"])
    assert meta["tokenizer.ggml.token_type"][:2] == [3, 3]
    assert all(" " in m for m in meta["tokenizer.ggml.merges"])
    path = tmp_path / "tok.json"
    tok.save(path)
    back = Tokenizer.load(path)
    text = "the newest 12345 wörds"
    assert back.encode(text) == tok.encode(text)


def test_written_gguf_reads_back(tmp_path):
    gguf = pytest.importorskip("gguf")
    tok = train_bpe(CORPUS, vocab_size=330, pre="gpt2", special_tokens=["<|endoftext|>"])
    path = tmp_path / "vocab.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    tok.add_to_gguf(w)
    # the few hyperparameters llama.cpp wants before it reads a vocabulary-only file
    for key, value in (("context_length", 64), ("embedding_length", 32), ("block_count", 1),
                       ("feed_forward_length", 64), ("attention.head_count", 2)):
        w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    texts = CORPUS + ["unseen wörds 9876 <|endoftext|>!"]
    back = Tokenizer.from_gguf(path)
    for text in texts:
        assert back.encode(text) == tok.encode(text)
    try:
        import llama_cpp
    except ImportError:
        return
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    for text in texts:
        for special in (False, True):
            assert llm.tokenize(text.encode(), add_bos=False, special=special) == \
                tok.encode(text, parse_special=special)


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_bpe(["abc"], vocab_size=100)
    with pytest.raises(ValueError, match="'nope'"):
        train_bpe(["abc"], vocab_size=300, pre="nope")
