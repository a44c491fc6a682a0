"""Chat templates: the GGUF's tokenizer.chat_template (Jinja2), rendered like HF transformers,
with built-in formats for architectures whose files ship without one (llama.cpp does the same)."""

from __future__ import annotations


def _gemma(messages: list[dict], add_generation_prompt: bool, bos: str) -> str:
    # Gemma has no system role: a system message is prepended to the first user turn.
    out, system = [bos], ""
    for m in messages:
        role, content = m["role"], str(m.get("content", ""))
        if role == "system":
            system = content + "\n\n"
            continue
        turn = "model" if role == "assistant" else "user"
        if turn == "user":
            content, system = system + content, ""
        out.append(f"<start_of_turn>{turn}\n{content.strip()}<end_of_turn>\n")
    if add_generation_prompt:
        out.append("<start_of_turn>model\n")
    return "".join(out)


def _chatml(messages: list[dict], add_generation_prompt: bool, bos: str) -> str:
    out = [f"<|im_start|>{m['role']}\n{m.get('content', '')}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


BUILTIN = {"gemma3": _gemma, "gemma2": _gemma, "gemma": _gemma}


def render(model, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages` ([{"role": ..., "content": ...}]) in the model's format."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"messages[{i}] must be a dict with a 'role' key, got {m!r}")
    tok = model.tokenizer
    bos = tok.token_to_piece(tok.bos_id) if getattr(tok, "bos_id", None) is not None else ""
    eos = tok.token_to_piece(tok.eos_id) if getattr(tok, "eos_id", None) is not None else ""
    template = model.metadata.get("tokenizer.chat_template")
    if not template:
        fn = BUILTIN.get(model.architecture, _chatml)
        return fn(messages, add_generation_prompt, bos)
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise RuntimeError("chat templates need jinja2: pip install jinja2") from e

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
