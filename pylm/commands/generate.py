"""`pylm generate -m MODEL -p PROMPT -n N` and `pylm chat -m MODEL`."""

from __future__ import annotations

import sys
import time


def _load(args):
    import pylm

    return pylm.load(args.model, threads=args.threads, n_ctx=args.ctx)


def _common(p):
    p.add_argument("-m", "--model", required=True, help="GGUF path or a name known to `pylm pull`")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-c", "--ctx", type=int, default=None, help="context length (default min(train, 4096))")
    p.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy)")
    p.add_argument("--seed", type=int, default=None)


def run_generate(args) -> int:
    m = _load(args)
    t0 = time.perf_counter()
    n = 0
    for piece in m.generate(args.prompt, max_tokens=args.n, temperature=args.temp, seed=args.seed, stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
        n += 1
    dt = time.perf_counter() - t0
    sys.stdout.write("\n")
    if args.verbose:
        print(f"[{n} pieces in {dt:.2f} s]", file=sys.stderr)
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
        for piece in m.chat(messages, max_tokens=args.n, temperature=args.temp, seed=args.seed, stream=True):
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
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run_generate)
    c = sub.add_parser("chat", help="interactive chat with the model's chat template (streaming)")
    _common(c)
    c.add_argument("-n", type=int, default=256, help="max tokens per reply")
    c.add_argument("--system", default=None, help="system message")
    c.set_defaults(func=run_chat)
