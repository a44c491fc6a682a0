"""A draft model for speculative decoding, distilled from its target by pylm's own trainer.

The draft starts as a few of the target's layers (by default its first two) under the target's
own embedding, final norm and output head, i.e. the target with most of its depth cut out; it
shares the target's tokenizer and vocabulary, as speculative decoding needs. It then learns to
predict what the target predicts: the training text is the target's own greedy continuations
of a mixed set of prompts, and the label at every position is the target's greedy next token
there (``teacher_corpus``). The embedding (tied to the output head) stays frozen; the layers
and the final norm train.

    python -m pylm.train.distill TARGET.gguf DRAFT.gguf --tokens 150000 --minutes 20
    pylm generate -m TARGET.gguf --draft DRAFT.gguf --draft-head-rows 8192 -p "..." -v

The prompts (``draft_prompts``) come from what any Python installation has offline: sentence
openings from the standard library's docstrings, function signatures with their docstring's
first line from its sources, and prose and chat prompts over a fixed list of topics. None of
them is one of ``benchmarks/bench_speculative.py``'s prompts.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from .config import LlamaConfig
from .params import ParamBuffer

TOPICS = [
    "the printing press", "volcanoes", "the water cycle", "black holes", "the French Revolution",
    "machine learning", "the immune system", "coral reefs", "the stock market", "jazz music",
    "the Great Wall of China", "plate tectonics", "vaccines", "the Industrial Revolution",
    "climate change", "the human brain", "electric cars", "the Moon landing", "honey bees",
    "the Internet", "ancient Egypt", "renewable energy", "the Olympic Games", "chess",
    "the theory of evolution", "the Amazon rainforest", "democracy", "quantum computing",
    "the Renaissance", "earthquakes", "nutrition", "the solar system", "world trade",
    "the Cold War", "bread baking", "linear algebra", "the Silk Road", "hurricanes",
    "public libraries", "the piano", "recycling", "the Vikings", "DNA", "sleep", "gravity",
    "the Mediterranean diet", "cryptography", "the Byzantine Empire", "glaciers", "friendship",
    "space telescopes", "the history of medicine", "rivers", "mathematics education",
    "operating systems", "the American Civil War", "sharks", "urban planning", "coffee",
    "the Pythagorean theorem", "databases", "deserts", "the Ottoman Empire", "tea",
    "compilers", "volunteering", "the Arctic", "Shakespeare", "rainbows", "bicycles",
    "the periodic table", "forests", "the human heart", "time management", "economics",
    "the speed of light", "music theory", "ancient Greece", "robots", "wind power",
]

PROSE = [
    "{T} is", "A short introduction to {t}:", "Here are three facts about {t}:",
    "In this essay, I will discuss {t}.", "Many people do not know that {t}",
    "The most important thing to understand about {t} is",
    "Question: What is {t}?\nAnswer:", "Students who learn about {t} often",
    "Chapter 1: {T}\n\n", "Scientists have studied {t} for",
]

CHAT = [
    "Explain {t} in simple terms.", "Write a short paragraph about {t}.",
    "What are the main ideas behind {t}?", "Give me three interesting facts about {t}.",
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _stdlib_prompts(limit: int) -> tuple[list[str], list[str]]:
    """(docstring openings, function signatures + docstring first lines) from the stdlib."""
    from .corpus import stdlib_trees

    prose, code = [], []
    for tree in stdlib_trees():
        if len(prose) >= limit and len(code) >= limit:
            break
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 80:
                continue
            words = doc.split()
            if len(prose) < limit and len(words) >= 12:
                prose.append(" ".join(words[:6 + len(prose) % 7]))
            first = doc.strip().splitlines()[0].strip()
            if (len(code) < limit and isinstance(node, ast.FunctionDef) and first
                    and not node.name.startswith("_")):
                code.append(f"def {node.name}({ast.unparse(node.args)}):\n"
                            f"    \"\"\"{first}\"\"\"\n")
    return prose, code


def draft_prompts(n: int, seed: int = 0, chat_template=None) -> list[str]:
    """n prompts, shuffled with seed: stdlib docstring openings (30%), function signatures with
    their docstring's first line (25%), prose over TOPICS (30%) and, when chat_template (a
    function messages -> text) is given, chat requests over TOPICS (15%; prose otherwise)."""
    rng = np.random.default_rng(seed)
    n_doc, n_code = int(0.30 * n), int(0.25 * n)
    n_chat = int(0.15 * n) if chat_template is not None else 0
    docs, code = _stdlib_prompts(max(n_doc, n_code) * 4)
    out = [docs[i] for i in rng.permutation(len(docs))[:n_doc]]
    out += [code[i] for i in rng.permutation(len(code))[:n_code]]
    grid = [(f, t) for f in PROSE for t in TOPICS]
    for i in rng.permutation(len(grid))[: n - len(out) - n_chat]:
        f, t = grid[i]
        out.append(f.format(t=t, T=_cap(t)))
    asks = [(f, t) for f in CHAT for t in TOPICS]
    for i in rng.permutation(len(asks))[:n_chat]:
        f, t = asks[i]
        out.append(chat_template([{"role": "user", "content": f.format(t=t)}]))
    return [out[i] for i in rng.permutation(len(out))]


def teacher_corpus(target, prompts, new_tokens: int = 192, batch: int = 32,
                   progress: bool = True, temperature: float = 0.0,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The target's continuations of prompts, batch sequences decoded together: greedy, or
    sampled at temperature (more varied text from the same prompts; the labels stay greedy).

    Returns (tokens, labels), int32, the sequences (prompt + continuation) one after another;
    labels[i] is the target's greedy prediction after tokens[..i] within its own sequence
    (over the prompt too), so a window across two sequences never learns the seam. Greedy,
    a continuation is its labels, shifted by one.
    """
    from ..sampling import Sampler, SamplingParams

    if not temperature >= 0:
        raise ValueError(f"temperature={temperature!r} must be >= 0")
    sampler = Sampler(SamplingParams(temperature=temperature, seed=seed), target.n_vocab)

    def pick(logits: np.ndarray, greedy: int) -> int:  # greedy: the argmax, already known
        return greedy if sampler.params.greedy else sampler.sample(logits)

    eog = set(target.eog_ids())
    tokens, labels = [], []
    n_new = 0
    t0 = time.perf_counter()
    for b in range(0, len(prompts), batch):
        seqs, tok, lab, nxt = [], [], [], []
        try:
            for p in prompts[b:b + batch]:
                ids = target.tokenize(p, parse_special=True)
                s = target.new_sequence()
                seqs.append(s)
                tok.append(list(ids))
                lg = s.feed(ids, all_logits=True)
                lab.append([int(x) for x in np.argmax(lg, axis=-1)])
                nxt.append(pick(lg[-1], lab[-1][-1]))
            plen = [len(t) for t in tok]
            active = list(range(len(seqs)))
            while active:
                # stop at an end-of-generation token or the budget (the last label stays: the
                # draft learns it)
                active = [i for i in active
                          if nxt[i] not in eog and len(tok[i]) - plen[i] < new_tokens]
                if not active:
                    break
                for i in active:
                    tok[i].append(nxt[i])
                lg = target.decode_batch([seqs[i] for i in active], [tok[i][-1] for i in active])
                for i, row, x in zip(active, lg, np.argmax(lg, axis=-1)):
                    lab[i].append(int(x))
                    nxt[i] = pick(row, int(x))
        finally:
            for s in seqs:
                s.free()
        tokens += tok
        labels += lab
        n_new += sum(len(t) - k for t, k in zip(tok, plen))
        if progress:
            dt = time.perf_counter() - t0
            print(f"\rteacher: {min(b + batch, len(prompts))}/{len(prompts)} prompts, "
                  f"{n_new:,} new tokens, {n_new / dt:.0f} tok/s", end="", file=sys.stderr,
                  flush=True)
    if progress:
        print(file=sys.stderr)
    return (np.fromiter((x for t in tokens for x in t), np.int32),
            np.fromiter((x for t in labels for x in t), np.int32))


def layer_subset(cfg: LlamaConfig, params: ParamBuffer, layers) -> tuple[LlamaConfig, ParamBuffer]:
    """A model made of the given layers of (cfg, params), in that order, with its embedding,
    final norm and head."""
    layers = [int(i) for i in layers]
    if not layers or any(not 0 <= i < cfg.n_layers for i in layers):
        raise ValueError(f"layers={layers}: need layer indices in [0, {cfg.n_layers})")
    sub = dataclasses.replace(cfg, n_layers=len(layers))
    p = ParamBuffer(sub)
    for name in p:
        if name.startswith("blk."):
            _, i, rest = name.split(".", 2)
            p[name][...] = params[f"blk.{layers[int(i)]}.{rest}"]
        else:
            p[name][...] = params[name]
    return sub, p


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("target", help="the target model (a llama GGUF, or a name known to pylm pull)")
    ap.add_argument("out", help="the draft GGUF to write")
    ap.add_argument("--layers", default="0,1", help="target layers the draft starts from")
    ap.add_argument("--tokens", type=int, default=150_000, help="teacher tokens to generate")
    ap.add_argument("--new-tokens", type=int, default=192, help="continuation length per prompt")
    ap.add_argument("--corpus", help="cache the teacher corpus in this .npz (reused if present)")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="sample the teacher's continuations (labels stay greedy); 0: greedy")
    ap.add_argument("--context", type=int, default=256, help="training sequence length")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=None, help="training time limit")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--head-rows", type=int, default=8192,
                    help="train the head for token ids < N only (run the draft with "
                         "--draft-head-rows N); 0: the whole vocabulary")
    ap.add_argument("--dtype", default="Q8_0",
                    help="tensor type of the written draft (Q8_0: the same acceptance as F16 "
                         "for a 0.7x draft step on SmolLM2)")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run(a: argparse.Namespace) -> int:
    """Generates (or reads) the teacher corpus, trains the draft, writes it; returns 0."""
    from ..hub import resolve
    from ..model import load
    from .data import Windows
    from .import_gguf import load_gguf
    from .model import LlamaModel
    from .trainer import Trainer

    progress = not a.quiet
    if a.minutes is not None and not a.minutes > 0:
        raise ValueError(f"--minutes {a.minutes}: must be > 0")
    target_path = resolve(a.target)
    if a.corpus and Path(a.corpus).exists():
        z = np.load(a.corpus)
        tokens, labels = z["tokens"], z["labels"]
    else:
        n_prompts = max(1, -(-a.tokens // a.new_tokens))
        batch = 32
        target = load(target_path, threads=a.threads, n_ctx=batch * (a.new_tokens + 256))
        chat = target.apply_chat_template if target.metadata.get("tokenizer.chat_template") else None
        prompts = draft_prompts(n_prompts, a.seed, chat)
        tokens, labels = teacher_corpus(target, prompts, a.new_tokens, batch, progress,
                                        a.temperature, a.seed)
        del target
        if a.corpus:
            np.savez(a.corpus, tokens=tokens, labels=labels)
    n_val = max(a.context * a.batch * 4, len(tokens) // 20)
    if len(tokens) - n_val <= a.context:
        raise ValueError(f"--tokens {a.tokens}: {len(tokens)} teacher tokens leave too few to "
                         f"train on after {n_val} held out (context {a.context}, batch {a.batch})")
    cfg, params, tok = load_gguf(target_path, context=a.context)
    sub, p = layer_subset(cfg, params, a.layers.split(","))
    del params
    model = LlamaModel(sub, params=p, threads=a.threads)
    if a.head_rows:
        model.head_rows = min(a.head_rows, sub.vocab)
    trainable = ["blk.*", "output_norm.weight"]
    if not sub.tie_embeddings:
        trainable.append("output.weight")
    tr = Trainer(sub, Windows(tokens[:-n_val], a.context, labels[:-n_val]),
                 Windows(tokens[-n_val:], a.context, labels[-n_val:]), tokenizer=tok,
                 model=model, batch_size=a.batch, lr=a.lr, max_steps=a.steps,
                 eval_every=a.eval_every, eval_batches=None, trainable=trainable, seed=a.seed,
                 progress=progress)
    if progress:
        print(f"draft: layers {a.layers} of {cfg.n_layers}, {len(tokens) - n_val:,} training "
              f"tokens, {n_val:,} held out", file=sys.stderr)
    if a.minutes:
        # A time budget: the cosine schedule is stretched over the steps that fit in it, at
        # the speed of the first few (evaluations take about a tenth more).
        t0 = time.perf_counter()
        probe = min(10, a.steps)
        tr.fit(max_steps=probe, restore_best=False)
        per_step = 1.1 * a.batch * a.context / float(np.median(tr.history["tokens_per_s"]))
        tr.args.max_steps = max(probe, min(a.steps, int(a.minutes * 60 / per_step)))
        tr.args.warmup = min(tr.args.warmup, max(probe, tr.args.max_steps // 10))
        tr.fit(time_limit=max(0.0, a.minutes * 60 - (time.perf_counter() - t0)))
    else:
        tr.fit()
    tr.export(a.out, dtype=a.dtype, name="pylm-draft")
    if progress:
        print(f"{a.out}: best validation loss {tr.best_val:.3f} at step {tr.best_step}",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pylm.train.distill",
                                 description=__doc__.split("\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
