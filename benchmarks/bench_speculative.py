#!/usr/bin/env python3
"""Speculative decoding: acceptance α, cost ratio c, tokens/s with and without speculation, and
the measured speedup against Leviathan et al.'s prediction (1 − α^(γ+1)) / ((1 − α)(γc + 1)).

    python benchmarks/bench_speculative.py -m TARGET.gguf --draft DRAFT.gguf -t 2 -n 128 \
        --gamma 2 4 6 [--json out.json]

Method (greedy, fixed γ, end-of-generation ignored so every run makes n tokens):
- baseline: target alone, decode tokens/s (the prefill excluded), same prompts; each row's
  speedup pairs every speculative generation with a plain one right before it (same minutes);
- c: draft / target time of one single-token decode step (median over steps on a fresh
  sequence; draft and target timed in alternation, median of the per-round ratios), measured
  right before each row, so that the row's prediction and its measured speedup come from the
  same minutes (the machine's speed drifts: c measured once at the start of a run was
  0.35-0.48 from run to run); the start's values are kept too ("c" in the JSON);
- v: target time of one (γ+1)-token verification forward / one single-token step, in the same
  alternation: the formula assumes v = 1; a refined prediction divides by (γc + v) instead of
  (γc + 1);
- α: accepted / examined proposals (examined: up to and including each round's first rejection);
- with --draft-head-rows N, the draft pair again with the draft's output head cut to token ids
  < N (FR-Spec: BPE ids follow merge order, i.e. frequency), c measured that way too;
- with --draft-head-screen K, the draft pair again with the draft's head screened: logits from
  a Q4_0 copy of the head, the copy's top K recomputed with the head (Model.head_screen: the
  draft's greedy proposals are its own unless the argmax falls outside that top K);
- with --distilled PATH, a draft trained by `pylm distill` on the target's outputs (its head cut
  to --distilled-head-rows, 8192 by default, as it was trained);
- n-gram prompt lookup on a prompt that asks to repeat a given text (c ≈ 0);
- with --peer, llama.cpp through llama-cpp-python on the same file, prompt ids and threads:
  greedy decode alone and with its prompt-lookup speculation (LlamaPromptLookupDecoding) at
  the same γ, each run alternating with pylm's counterpart (build it for this CPU, see
  bench_e2e.py);
- per row, the same costs inside the speculative runs, over a plain decode step of the same
  minutes (c_in_run, v_in_run: the draft's step there also pays for catch-up calls, its
  sampler and a cache the target has just swept) and the share of decode time outside both
  models' forwards.
Wall-clock times by default; on a shared machine use -t 1 --clock cpu (this process's CPU time,
which excludes time spent waiting for a core; exact only with one thread).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import pylm

PROMPTS = [
    "The history of the Roman Empire begins",
    "def quicksort(arr):\n    \"\"\"Sort a list.\"\"\"\n",
    "Photosynthesis is the process by which",
]

REPEAT_TEXT = (
    "def area(width, height):\n    return width * height\n\n"
    "def perimeter(width, height):\n    return 2 * (width + height)\n\n"
    "def describe(width, height):\n    print('area', area(width, height))\n"
    "    print('perimeter', perimeter(width, height))\n"
)


CLOCK = time.perf_counter


def step_time(m, n: int, width: int = 1) -> float:
    """Mean seconds of one forward of `width` tokens after a 32-token context."""
    seq = m.new_sequence()
    seq.feed(list(range(100, 132)))
    times = []
    for i in range(n):
        t0 = CLOCK()
        seq.feed([200 + (i + j) % 50 for j in range(width)], all_logits=width > 1)
        times.append(CLOCK() - t0)
        if width > 1:
            seq.truncate(32)
    seq.free()
    return statistics.median(times)


def run(m, prompt, n, **kw):
    """One generation. With the cpu clock, decode_s becomes the whole call's CPU seconds (the
    short prompt's prefill included, for the baseline and speculation alike)."""
    t0 = CLOCK()
    res = m.generate(prompt, max_tokens=n, ignore_eos=True, return_stats=True, **kw)
    if CLOCK is not time.perf_counter:
        res.stats.decode_s = CLOCK() - t0
    return res


def llama_cpp_peer(path, threads: int, ctx: int, prompt_ids, n: int, gammas, reps: int, pylm_model):
    """llama.cpp (llama-cpp-python) on the same file, prompt ids and threads: greedy decode
    tokens/s alone and with its prompt-lookup speculation (LlamaPromptLookupDecoding, γ draft
    tokens), each run right after pylm's counterpart (plain, n-gram) so that each ratio is over
    the same minutes. None without llama-cpp-python."""
    try:
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    except ImportError:
        return None

    def llama_tps(llm):
        toks, t_first = [], None
        for tok in llm.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
            toks.append(int(tok))
            if t_first is None:
                t_first = CLOCK()  # after the prefill and the first token, as pylm's decode_s
            if len(toks) == n:
                break
        return (len(toks) - 1) / (CLOCK() - t_first), toks

    out = {"system_info": llama_cpp.llama_print_system_info().decode().strip(), "rows": []}
    print("llama.cpp:", out["system_info"], file=sys.stderr)
    for g in [None] + list(gammas):
        kw = {} if g is None else {"draft_model": LlamaPromptLookupDecoding(num_pred_tokens=g)}
        llm = Llama(model_path=str(path), n_ctx=ctx, n_threads=threads, n_threads_batch=threads,
                    verbose=False, **kw)
        ours, theirs, same = [], [], True
        for _ in range(reps):
            r = run(pylm_model, list(prompt_ids), n,
                    **({} if g is None else {"draft": "ngram", "n_draft": g}))
            ours.append(r.stats.tokens_per_s)
            tps, toks = llama_tps(llm)
            theirs.append(tps)
            same = same and toks == list(r.token_ids)
        row = {"gamma": g, "pylm_tps": statistics.median(ours),
               "llama_cpp_tps": statistics.median(theirs), "same_tokens": same}
        row["ratio"] = row["pylm_tps"] / row["llama_cpp_tps"]
        out["rows"].append(row)
        print(f"{'plain' if g is None else f'n-gram γ={g}':12s} pylm {row['pylm_tps']:.1f} tok/s, "
              f"llama.cpp {row['llama_cpp_tps']:.1f} tok/s: {row['ratio']:.2f}x, same tokens={same}",
              file=sys.stderr)
        del llm
    return out


def predicted(alpha: float, gamma: int, c: float, v: float = 1.0) -> float:
    if alpha >= 1.0:
        return (gamma + 1) / (gamma * c + v)
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + v))


def bench(args) -> dict:
    target = pylm.load(args.model, threads=args.threads, n_ctx=args.ctx)
    draft = pylm.load(args.draft, threads=args.threads, n_ctx=args.ctx) if args.draft else None
    distilled = (pylm.load(args.distilled, threads=args.threads, n_ctx=args.ctx)
                 if args.distilled else None)
    out = {"target": str(target.path), "draft": str(draft.path) if draft else None,
           "distilled": str(distilled.path) if distilled else None,
           "threads": target.threads, "isa": pylm.active_isa(), "n": args.n, "clock": args.clock,
           "rows": []}
    # The draft configurations: (row kind, model, head rows).
    pairs = []
    if draft is not None:
        pairs.append(("draft", draft, draft.n_vocab))
        if args.draft_head_rows:
            pairs.append(("draft-fr", draft, args.draft_head_rows))
        if args.draft_head_screen:  # a second instance: the screen's head copy stays built
            screened = pylm.load(args.draft, threads=args.threads, n_ctx=args.ctx)
            screened.head_screen = args.draft_head_screen
            pairs.append(("draft-screen", screened, screened.n_vocab))
    if distilled is not None:
        pairs.append(("distilled", distilled, args.distilled_head_rows or distilled.n_vocab))
    # Step costs in alternation (the machine's speed drifts: a ratio of two separate timings
    # would carry that drift), median of per-round ratios.
    steps, cs = [], {kind: [] for kind, _, _ in pairs}
    for _ in range(5):
        t = step_time(target, 6)
        steps.append(t)
        for kind, m, rows in pairs:
            m.head_rows = rows
            cs[kind].append(step_time(m, 6) / t)
    t_tgt = statistics.median(steps)
    out["target_step_s"] = t_tgt
    costs = {kind: statistics.median(v) for kind, v in cs.items()}
    out["c"] = costs
    out["head_rows"] = {kind: rows for kind, _, rows in pairs}
    prompts = PROMPTS
    chat = [{"role": "user", "content": "Repeat this code exactly, then say done:\n\n" + REPEAT_TEXT}]
    repeat_prompt = target.apply_chat_template(chat) if target.metadata.get("tokenizer.chat_template") \
        else "Repeat this code exactly:\n\n" + REPEAT_TEXT + "\nHere it is again:\n\n"

    def median_tps(prompts_, **kw):
        per_rep = []
        results = []
        for _ in range(args.reps):
            toks, secs = 0, 0.0
            for p in prompts_:
                r = run(target, p, args.n, **kw)
                toks += r.stats.generated_tokens - 1
                secs += r.stats.decode_s
                results.append(r)
            per_rep.append(toks / secs)
        return statistics.median(per_rep), results

    def paired(prompts_, **kw):
        """Speculative and plain decoding alternating prompt by prompt: (speculative tok/s,
        its results, speedup = ratio of the two tokens/s over the same minutes, the plain
        decode's seconds per token in those minutes)."""
        tok, sec, tok0, sec0, results = 0, 0.0, 0, 0.0, []
        for _ in range(args.reps):
            for p in prompts_:
                r0 = run(target, p, args.n)
                r = run(target, p, args.n, **kw)
                tok0 += r0.stats.generated_tokens - 1
                sec0 += r0.stats.decode_s
                tok += r.stats.generated_tokens - 1
                sec += r.stats.decode_s
                results.append(r)
        return tok / sec, results, (tok / sec) / (tok0 / sec0), sec0 / tok0

    base_tps, base_res = median_tps(prompts)
    out["baseline_tps"] = base_tps
    print(f"target step {t_tgt * 1e3:.1f} ms, baseline {base_tps:.1f} tok/s"
          + "".join(f", c({kind}) = {c:.3f}" for kind, c in costs.items()), file=sys.stderr)
    cases = []
    for kind, m, rows in pairs:
        cases += [(kind, g, m, rows, prompts, base_res) for g in args.gamma]
        cases += [(kind + "+adaptive", max(args.gamma), m, rows, prompts, base_res)]
    rep_tps, rep_res = median_tps([repeat_prompt])
    out["baseline_repeat_tps"] = rep_tps
    cases += [("ngram", g, "ngram", None, [repeat_prompt], rep_res) for g in args.ngram_gamma]
    cases += [("ngram+adaptive", max(args.ngram_gamma), "ngram", None, [repeat_prompt], rep_res)]

    def row_costs(d, g: int) -> tuple[float, float]:
        """c (d a draft model, else 0) and v for γ = g over the next minutes: target step,
        draft step and (g + 1)-token verification in alternation, medians of per-round ratios."""
        cs, vs = [], []
        for _ in range(5):
            t = step_time(target, 6)
            if not isinstance(d, str):
                cs.append(step_time(d, 6) / t)
            vs.append(step_time(target, 6, g + 1) / t)
        return (statistics.median(cs) if cs else 0.0), statistics.median(vs)

    for kind, g, d, rows, prompts_, ref_res in cases:
        adaptive = kind.endswith("+adaptive")  # γ varies: the formula's rows use the start γ
        if rows is not None:  # the draft's head (FR-Spec rows: a vocabulary prefix)
            d.head_rows = rows
        c, v = row_costs(d, g)
        tps, res, speedup, step0 = paired(prompts_, draft=d, n_draft=g, adaptive_draft=adaptive)
        same = all(a.token_ids == b.token_ids for a, b in zip(res, ref_res))
        acc = sum(r.stats.accepted for r in res)
        rej = sum(r.stats.rejected for r in res)
        alpha = acc / (acc + rej) if acc + rej else float("nan")
        calls = sum(r.stats.target_calls for r in res)
        tpc = sum(r.stats.generated_tokens - 1 for r in res) / calls
        # The same costs as they were inside the speculative runs: a draft step's mean time
        # (catch-up calls, its sampler, and the target's weights having evicted the draft's from
        # the cache included) and a verification's, over a plain decode step of the same
        # minutes (the isolated step was timed earlier: the machine's speed drifts); and the
        # share of the decode time spent outside both forwards (Python, sampling, verification).
        n_dc = sum(r.stats.draft_calls for r in res)
        c_run = sum(r.stats.draft_s for r in res) / n_dc / step0 if n_dc else 0.0
        v_run = sum(r.stats.target_s for r in res) / calls / step0
        fwd_s = sum(r.stats.draft_s + r.stats.target_s for r in res)
        other = 1.0 - fwd_s / sum(r.stats.decode_s for r in res)
        row = {"kind": kind, "gamma": g, "c": c, "alpha": alpha, "tokens_per_target_call": tpc,
               "tokens_per_call_predicted": predicted(alpha, g, 0.0), "v": v, "tps": tps,
               "speedup": speedup, "predicted": predicted(alpha, g, c),
               "predicted_refined": predicted(alpha, g, c, v), "identical_to_greedy": same,
               "c_in_run": c_run, "v_in_run": v_run, "other_share": other,
               "predicted_in_run": predicted(alpha, g, c_run)}
        row["measured_over_predicted"] = row["speedup"] / row["predicted"]
        out["rows"].append(row)
        print(f"{kind:19s} γ={g}: α={alpha:.3f} tok/call={tpc:.2f} (pred {row['tokens_per_call_predicted']:.2f}) "
              f"c={c:.3f} v={v:.2f} {tps:.1f} tok/s speedup {row['speedup']:.2f}x, predicted {row['predicted']:.2f}x "
              f"(refined {row['predicted_refined']:.2f}x), identical={same}\n"
              f"{'':19s}   in the run: c={c_run:.3f} v={v_run:.2f} outside forwards "
              f"{100 * other:.1f}%, formula with c_run {row['predicted_in_run']:.2f}x",
              file=sys.stderr)
    if args.peer:
        ids = target.tokenize(repeat_prompt, parse_special=True)
        out["llama_cpp_peer"] = llama_cpp_peer(target.path, target.threads, args.ctx, ids, args.n,
                                               args.ngram_gamma, max(3, args.reps), target)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="target GGUF (path or pull name)")
    ap.add_argument("--draft", default=None, help="draft GGUF with the same vocabulary")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("-c", "--ctx", type=int, default=1024)
    ap.add_argument("-n", type=int, default=96, help="tokens per generation")
    ap.add_argument("-r", "--reps", type=int, default=1)
    ap.add_argument("--gamma", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--draft-head-rows", type=int, default=None, metavar="N",
                    help="also run the draft pair with the draft's head cut to token ids < N "
                         "(FR-Spec), with its own c")
    ap.add_argument("--draft-head-screen", type=int, default=None, metavar="K",
                    help="also the draft pair with the draft's head screened by a Q4_0 copy, "
                         "its top K recomputed exactly (Model.head_screen)")
    ap.add_argument("--distilled", default=None,
                    help="a draft trained by `pylm distill` for this target: its own rows")
    ap.add_argument("--distilled-head-rows", type=int, default=8192, metavar="N",
                    help="the distilled draft's head rows (what it was trained for; 0: all)")
    ap.add_argument("--ngram-gamma", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--peer", action="store_true",
                    help="also llama.cpp (llama-cpp-python) on the repeat prompt, plain and with "
                         "its prompt-lookup speculation, alternating with pylm's")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    out = bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
