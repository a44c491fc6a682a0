"""Chat templates: the GGUF's tokenizer.chat_template (Jinja2), rendered like HF transformers."""

from __future__ import annotations


def render(model, messages: list[dict], add_generation_prompt: bool = True) -> str:
    template = model.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError(f"{model.path}: the model has no chat template (tokenizer.chat_template)")
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise RuntimeError("chat templates need jinja2: pip install jinja2") from e

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    tok = model.tokenizer
    bos = tok.token_to_piece(tok.bos_id) if getattr(tok, "bos_id", None) is not None else ""
    eos = tok.token_to_piece(tok.eos_id) if getattr(tok, "eos_id", None) is not None else ""
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
