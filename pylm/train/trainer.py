"""Trainer: the training loop around LlamaModel — batches, AdamW with clipping and a warm-up +
cosine schedule, periodic validation, early stopping, checkpoints that resume exactly, a
progress line with loss and tokens/s, a loss-curve PNG, and GGUF export.

>>> import numpy as np
>>> from pylm.train import LlamaConfig, Trainer
>>> cfg = LlamaConfig(vocab=16, d_model=16, n_layers=1, n_heads=2, ffn=32, context=8)
>>> data = np.tile(np.arange(16, dtype=np.int32), 64)         # 0 1 2 ... 15 0 1 ...
>>> tr = Trainer(cfg, data, batch_size=4, lr=1e-2, max_steps=60, warmup=5, progress=False)
>>> tr.fit()["loss"][-1] < 0.5                                 # it learns to count
True
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import LlamaConfig
from .data import Windows
from .model import LlamaModel
from .optim import AdamW, clip_scale, cosine_lr, grad_norm
from .params import ParamBuffer


@dataclass
class TrainArgs:
    """Hyperparameters of the loop (stored in checkpoints)."""

    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float | None = None      # default lr / 10
    warmup: int | None = None        # default min(100, max_steps // 10)
    max_steps: int = 1000
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    eval_every: int = 100
    eval_batches: int | None = 16    # validation batches per evaluation (None: all)
    patience: int | None = 5         # evaluations without improvement before stopping
    min_delta: float = 1e-3
    seed: int = 0
    trainable: list[str] | None = None  # glob patterns of parameters to train (None: all)

    def __post_init__(self):
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if self.warmup is None:
            self.warmup = min(100, self.max_steps // 10)
        for name in ("batch_size", "max_steps", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainArgs: {name} must be >= 1, got {getattr(self, name)}")


def _windows(data, T: int) -> Windows | None:
    if data is None or isinstance(data, Windows):
        return data
    return Windows(np.asarray(data), T)


class Trainer:
    """Trains a Llama decoder on token arrays.

    Args:
        config: the model shape (config.context is the training sequence length T).
        train_data: 1-D int token array (or a data.Windows).
        val_data: held-out tokens for validation / early stopping (optional).
        tokenizer: kept for export (anything with to_gguf_metadata()).
        threads: native threads (None: pylm's default).
        checkpoint: path written at every evaluation and at the end of fit().
        progress: draw a progress line on stderr.
        model: start from this LlamaModel (e.g. LlamaModel.from_gguf) instead of a fresh one.
        device: "cpu" (default), "cuda" or "cuda:N": train on the GPU (pylm.train.cuda_model;
            RuntimeError when CUDA is not built or usable, never a CPU fallback).
        dtype: on CUDA, "float32" or "bfloat16" (bf16 activations, fp32 master weights).
        **hyper: TrainArgs fields (batch_size, lr, max_steps, trainable, ...).
    """

    def __init__(self, config: LlamaConfig, train_data, val_data=None, *, tokenizer=None,
                 threads: int | None = None, checkpoint: str | os.PathLike | None = None,
                 progress: bool = True, model: LlamaModel | None = None, device: str = "cpu",
                 dtype: str = "float32", **hyper):
        from .cuda_model import parse_device

        self.device, device_index = parse_device(device)
        self.config = config
        self.args = TrainArgs(**hyper)
        self.train = _windows(train_data, config.context)
        if isinstance(val_data, Windows) or (val_data is not None and len(val_data) > config.context):
            self.val = _windows(val_data, config.context)
        else:  # absent, or too short for one window: no validation
            self.val = None
        self.tokenizer = tokenizer
        self.model = model or LlamaModel(config, seed=self.args.seed, threads=threads)
        if self.device == "cuda":
            from .cuda_model import CudaLlamaModel

            self.model = CudaLlamaModel.from_model(self.model, dtype, device_index)
        a = self.args
        names = list(self.model.params)
        if a.trainable is not None:
            train_names = [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in a.trainable)]
            if not train_names:
                raise ValueError(f"trainable={a.trainable} matches no parameter (names like "
                                 f"{names[1]!r}, {names[-1]!r})")
            self.model.frozen = set(names) - set(train_names)
        else:
            train_names = names
        if self.device == "cuda":
            from .cuda_model import CudaAdamW

            self.opt = CudaAdamW(self.model, (a.beta1, a.beta2), weight_decay=a.weight_decay,
                                 trainable=train_names)
        else:
            self.opt = AdamW(self.model.params, (a.beta1, a.beta2), weight_decay=a.weight_decay,
                             threads=self.model.threads, trainable=train_names)
        self.rng = np.random.default_rng(a.seed)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress = progress
        self._tty = sys.stderr.isatty()
        self.step_num = 0
        self.history = {"step": [], "loss": [], "lr": [], "grad_norm": [], "tokens_per_s": [],
                        "val_step": [], "val_loss": []}
        self.best_val = math.inf
        self.best_step = -1
        self.best_params: np.ndarray | None = None
        self.bad_evals = 0
        self.stopped_early = False

    # ---- one step ----
    def step(self) -> dict:
        """One optimizer step on a random batch. Returns loss, lr, grad_norm, tokens_per_s."""
        a, m = self.args, self.model
        t0 = time.perf_counter()
        ids, tg = self.train.sample(a.batch_size, self.rng)
        m.zero_grad()
        loss = m.forward(ids, tg)
        m.backward()
        cuda = self.device == "cuda"  # gradients stay on the device there
        norm = m.grad_norm() if cuda else grad_norm(m.grads, m.threads)
        lr = cosine_lr(self.step_num, a.lr, a.warmup, a.max_steps, a.min_lr)
        if math.isfinite(norm):
            self.opt.step(None if cuda else m.grads, lr, clip_scale(norm, a.grad_clip))
        self.step_num += 1
        tps = ids.size / (time.perf_counter() - t0)
        h = self.history
        for k, v in (("step", self.step_num), ("loss", loss), ("lr", lr), ("grad_norm", norm),
                     ("tokens_per_s", tps)):
            h[k].append(v)
        return {"step": self.step_num, "loss": loss, "lr": lr, "grad_norm": norm,
                "tokens_per_s": tps}

    def evaluate(self, max_batches: int | None = -1) -> float:
        """Mean validation loss per token (nan without validation data)."""
        if self.val is None:
            return math.nan
        if max_batches == -1:
            max_batches = self.args.eval_batches
        total, count = 0.0, 0
        for ids, tg in self.val.sequential(self.args.batch_size, max_batches):
            total += self.model.forward(ids, tg, grad=False) * tg.size
            count += tg.size
        return total / max(1, count)

    # ---- the loop ----
    def fit(self, max_steps: int | None = None, time_limit: float | None = None,
            restore_best: bool = True) -> dict:
        """Trains until max_steps (default args.max_steps), the time limit (seconds), or early
        stopping; evaluates every args.eval_every steps and at the end. Returns the history.
        With validation data and restore_best, the model ends with its best parameters."""
        a = self.args
        end = min(a.max_steps, max_steps or a.max_steps)
        t_start = time.perf_counter()
        tps_avg = None
        while self.step_num < end and not self.stopped_early:
            r = self.step()
            tps_avg = r["tokens_per_s"] if tps_avg is None else 0.9 * tps_avg + 0.1 * r["tokens_per_s"]
            timed_out = time_limit is not None and time.perf_counter() - t_start >= time_limit
            last = self.step_num >= end or timed_out
            if self.step_num % a.eval_every == 0 or last:
                self._eval_and_checkpoint()
            newline = self.step_num % a.eval_every == 0 or last
            if self.progress and (newline or self._tty):  # logs get one line per evaluation
                self._draw(r, end, tps_avg, newline=newline)
            if timed_out:
                break
        if restore_best and self.best_params is not None:
            if self.device == "cuda":
                self.model.load_params(self.best_params)
            else:
                self.model.params.data[...] = self.best_params
        return self.history

    def _eval_and_checkpoint(self) -> None:
        a = self.args
        v = self.evaluate()
        if not math.isnan(v):
            self.history["val_step"].append(self.step_num)
            self.history["val_loss"].append(v)
            if v < self.best_val - a.min_delta:
                self.best_val, self.best_step, self.bad_evals = v, self.step_num, 0
                self.best_params = self.model.params.data.copy()
            else:
                self.bad_evals += 1
                if a.patience is not None and self.bad_evals >= a.patience:
                    self.stopped_early = True
        if self.checkpoint is not None:
            self.save(self.checkpoint)

    def _draw(self, r: dict, end: int, tps: float, newline: bool) -> None:
        width = 24
        done = int(width * self.step_num / end)
        val = self.history["val_loss"][-1] if self.history["val_loss"] else math.nan
        left = (end - self.step_num) * self.args.batch_size * self.config.context / max(tps, 1e-9)
        line = (f"\rstep {self.step_num}/{end} [{'#' * done}{'.' * (width - done)}] "
                f"loss {r['loss']:.4f} val {val:.4f} lr {r['lr']:.2e} {tps:,.0f} tok/s "
                f"eta {left / 60:.1f} min")
        sys.stderr.write(line + ("\n" if newline else ""))
        if self.stopped_early and newline:
            sys.stderr.write(f"early stop: validation loss has not improved for "
                             f"{self.bad_evals} evaluations (best {self.best_val:.4f} at step "
                             f"{self.best_step})\n")
        sys.stderr.flush()

    # ---- checkpoints ----
    def save(self, path: str | os.PathLike) -> Path:
        """Writes parameters, optimizer state, RNG, history and settings (atomically)."""
        path = Path(path)
        meta = {
            "format": "pylm-train-checkpoint", "version": 1,
            "config": self.config.to_dict(), "args": dataclasses.asdict(self.args),
            "step": self.step_num, "opt_t": self.opt.t, "rng": self.rng.bit_generator.state,
            "history": self.history, "best_val": self.best_val, "best_step": self.best_step,
            "bad_evals": self.bad_evals, "stopped_early": self.stopped_early,
            "tokenizer": self.tokenizer.to_gguf_metadata() if self.tokenizer is not None else None,
        }
        arrays = {"params": self.model.params.data, "m": self.opt.m, "v": self.opt.v}
        if self.best_params is not None:
            arrays["best_params"] = self.best_params
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta, default=_json_default)), **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, train_data, val_data=None, *, tokenizer=None,
               threads: int | None = None, checkpoint: str | os.PathLike | None = None,
               progress: bool = True, device: str = "cpu", dtype: str = "float32",
               **overrides) -> Trainer:
        """A Trainer continuing from a checkpoint written by save(); `overrides` change
        TrainArgs (e.g. max_steps=...). The tokenizer defaults to the one saved in it."""
        meta, arrays = _read_checkpoint(path)
        cfg = LlamaConfig.from_dict(meta["config"])
        if tokenizer is None and meta.get("tokenizer"):
            tokenizer = _SavedTokenizer.from_metadata(meta["tokenizer"])
        args = {**meta["args"], **overrides}
        model = LlamaModel(cfg, params=ParamBuffer(cfg, arrays["params"].astype(np.float32)),
                           threads=threads)
        tr = cls(cfg, train_data, val_data, tokenizer=tokenizer, threads=threads,
                 checkpoint=checkpoint if checkpoint is not None else path, progress=progress,
                 model=model, device=device, dtype=dtype, **args)
        tr.opt.load_state_dict({"m": arrays["m"], "v": arrays["v"], "t": meta["opt_t"]})
        tr.step_num = int(meta["step"])
        tr.rng.bit_generator.state = meta["rng"]
        tr.history = meta["history"]
        tr.best_val, tr.best_step = float(meta["best_val"]), int(meta["best_step"])
        tr.bad_evals, tr.stopped_early = int(meta["bad_evals"]), bool(meta["stopped_early"])
        tr.best_params = arrays.get("best_params")
        return tr

    @staticmethod
    def checkpoint_tokenizer(path: str | os.PathLike):
        """The tokenizer saved in a checkpoint (None if it has none)."""
        meta, _ = _read_checkpoint(path, arrays=False)
        return _SavedTokenizer.from_metadata(meta["tokenizer"]) if meta.get("tokenizer") else None

    # ---- outputs ----
    def export(self, path: str | os.PathLike, dtype: str = "F32", name: str = "pylm-llama") -> Path:
        """Writes the model and tokenizer as a llama GGUF (see pylm.train.export)."""
        from .export import export_gguf

        return export_gguf(self.model, path, self.tokenizer, dtype, name)

    def plot(self, path: str | os.PathLike) -> Path | None:
        """Loss curves (train, smoothed, and validation) as a PNG; None without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        h = self.history
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(h["step"], h["loss"], lw=0.6, alpha=0.5, label="train")
        if len(h["loss"]) >= 20:
            k = max(1, len(h["loss"]) // 50)
            sm = np.convolve(h["loss"], np.ones(k) / k, mode="valid")
            ax.plot(h["step"][k - 1:], sm, lw=1.5, label=f"train ({k}-step mean)")
        if h["val_loss"]:
            ax.plot(h["val_step"], h["val_loss"], "o-", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats / token)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)


def _read_checkpoint(path, arrays: bool = True) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as z:
        if "meta" not in z.files:
            raise ValueError(f"{os.fspath(path)}: not a pylm training checkpoint")
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != "pylm-train-checkpoint":
            raise ValueError(f"{os.fspath(path)}: not a pylm training checkpoint")
        out = {k: z[k] for k in z.files if k != "meta"} if arrays else {}
    return meta, out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


class _SavedTokenizer:
    """A tokenizer restored from a checkpoint's GGUF metadata: pylm.tokenizer's when it is
    available, else the byte-level fallback (its metadata is fixed)."""

    @staticmethod
    def from_metadata(meta: dict):
        from .data import ByteTokenizer, _bpe_module

        tk = _bpe_module()
        if tk is not None:
            return tk.Tokenizer.from_metadata(meta)
        if len(meta.get("tokenizer.ggml.tokens", [])) == ByteTokenizer.n_vocab:
            return ByteTokenizer()
        raise RuntimeError("this checkpoint's tokenizer needs pylm.tokenizer, which is missing")
