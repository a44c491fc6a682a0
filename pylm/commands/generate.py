"""`pylm generate -m MODEL -p PROMPT -n N [sampling flags] [--draft MODEL|ngram]` and
`pylm chat -m MODEL`.

    pylm generate -m target.gguf -p "def fib(n):" -n 128 --draft smollm2 --n-draft 4 -v
"""

from __future__ import annotations

import sys


def _load(args):
    import pylm

    return pylm.load(args.model, threads=args.threads, n_ctx=args.ctx, device=args.device,
                     repack=not args.no_repack)


def _common(p):
    p.add_argument("-m", "--model", required=True, help="GGUF path or a name known to `pylm pull`")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-c", "--ctx", type=int, default=None, help="context length (default min(train, 4096))")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--no-repack", action="store_true",
                   help="CPU: keep Q4_0/Q4_1/Q8_0 weights as mapped (no packed copy; slower decode)")
    g = p.add_argument_group("sampling (llama.cpp order: penalties, top-k, typical, top-p, min-p, temp)")
    g.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy, the default)")
    g.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0 = off)")
    g.add_argument("--top-p", type=float, default=None, help="nucleus mass (1 = off)")
    g.add_argument("--min-p", type=float, default=None, help="keep p >= min_p * p_max (0 = off)")
    g.add_argument("--typical-p", type=float, default=None, help="locally typical mass (1 = off)")
    g.add_argument("--repeat-penalty", type=float, default=None, help="repetition penalty (1 = off)")
    g.add_argument("--repeat-last-n", type=int, default=None, help="penalty window (-1 = all, default 64)")
    g.add_argument("--presence-penalty", type=float, default=None)
    g.add_argument("--frequency-penalty", type=float, default=None)
    g.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None)


def _sampling_kwargs(args) -> dict:
    return dict(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                typical_p=args.typical_p, repetition_penalty=args.repeat_penalty,
                penalty_last_n=args.repeat_last_n, presence_penalty=args.presence_penalty,
                frequency_penalty=args.frequency_penalty, stop=args.stop, seed=args.seed)


def run_generate(args) -> int:
    m = _load(args)
    draft = None
    for flag, val in (("--draft-head-rows", args.draft_head_rows),
                      ("--draft-head-screen", args.draft_head_screen)):
        if val is not None and args.draft in (None, "ngram"):
            raise ValueError(f"{flag} {val} needs --draft MODEL (a draft model, not ngram)")
    if args.draft:
        import pylm

        draft = "ngram" if args.draft == "ngram" else pylm.load(
            args.draft, threads=args.threads, n_ctx=m.n_ctx, device=args.device,
            repack=not args.no_repack)
        if args.draft_head_rows is not None:
            draft.head_rows = args.draft_head_rows
        if args.draft_head_screen is not None:
            draft.head_screen = args.draft_head_screen
    stream = m.generate(args.prompt, max_tokens=args.n, stream=True, draft=draft, n_draft=args.n_draft,
                        adaptive_draft=args.adaptive_draft, **_sampling_kwargs(args))
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.verbose:
        print(f"[{stream.result.stats}; finish: {stream.result.finish_reason}]", file=sys.stderr)
    return 0


def run_chat(args) -> int:
    m = _load(args)
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    print("pylm chat — empty line or Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            user = input("> ")
        except EOFError:
            break
        if not user.strip():
            break
        messages.append({"role": "user", "content": user})
        reply = []
        for piece in m.chat(messages, max_tokens=args.n, stream=True, **_sampling_kwargs(args)):
            sys.stdout.write(piece)
            sys.stdout.flush()
            reply.append(piece)
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
    return 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt")
    _common(p)
    p.add_argument("-p", "--prompt", required=True)
    p.add_argument("-n", type=int, default=64, help="max tokens to generate")
    p.add_argument("-v", "--verbose", action="store_true", help="print speed / speculation stats")
    p.add_argument("--draft", default=None, metavar="MODEL|ngram",
                   help="speculative decoding: a draft GGUF with the same vocabulary, or ngram "
                        "(prompt lookup)")
    p.add_argument("--n-draft", type=int, default=None,
                   help="tokens proposed per round (default 4; ngram 8)")
    p.add_argument("--draft-head-rows", type=int, default=None, metavar="N",
                   help="the draft's output head computes token ids < N only (FR-Spec: BPE ids "
                        "follow frequency; e.g. 32768 of SmolLM2's 49152)")
    p.add_argument("--draft-head-screen", type=int, default=None, metavar="K",
                   help="the draft's logits from a 4-bit copy of its output head, the top K "
                        "recomputed with the head (greedy drafting reads about half the head)")
    p.add_argument("--adaptive-draft", action="store_true",
                   help="choose the draft length per round (1..2*n-draft) from measured "
                        "acceptance and costs")
    p.set_defaults(func=run_generate)
    c = sub.add_parser("chat", help="interactive chat with the model's chat template (streaming)")
    _common(c)
    c.add_argument("-n", type=int, default=256, help="max tokens per reply")
    c.add_argument("--system", default=None, help="system message")
    c.set_defaults(func=run_chat)
