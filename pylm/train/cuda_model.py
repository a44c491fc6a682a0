"""LlamaModel and AdamW on the GPU: the same model, layout and math as pylm.train.model, run by
the CUDA extension (``pylm._cuda.TrainModel``, cuda/train/model.cpp) with parameters,
gradients, AdamW moments and activations resident on the device.

Precision: ``dtype="float32"`` runs everything in fp32 (matches the CPU within rounding);
``dtype="bfloat16"`` keeps fp32 master weights, gradients, moments and residual stream and runs
the GEMMs and attention on bf16 activations (refreshing a bf16 copy of the weights in AdamW).

There is no CPU fallback: without a usable CUDA build and device, construction raises
RuntimeError.

>>> from pylm.train.config import LlamaConfig
>>> import pylm.cuda
>>> cfg = LlamaConfig(vocab=64, d_model=128, n_layers=1, n_heads=2, ffn=256, context=16)
>>> if pylm.cuda.is_available():
...     m = CudaLlamaModel(cfg)
"""

from __future__ import annotations

import math

import numpy as np

from ..model import parse_device  # noqa: F401 - re-exported for Trainer and the CLI
from .config import LlamaConfig
from .optim import decay_segments
from .params import ParamBuffer, init_params

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def _cuda_module(index: int):
    from .. import cuda

    mod = cuda._module()  # RuntimeError when pylm was built without CUDA
    if not hasattr(mod, "TrainModel"):
        raise RuntimeError("this pylm CUDA build has no training support (TrainModel)")
    n = cuda.device_count() if cuda.is_available() else 0
    if n == 0:
        raise RuntimeError("CUDA requested but no usable CUDA device was found")
    if not 0 <= index < n:
        raise RuntimeError(f"CUDA device {index} out of range (have {n})")
    return mod


class CudaLlamaModel:
    """LlamaModel's interface (forward / backward / zero_grad / params / grads / frozen) on the GPU.

    Args:
        config: the model shape; head_dim must be 64 or 128 (the flash attention kernels).
        params: initial ParamBuffer (default init_params(config, seed)); copied to the device.
        dtype: "float32" or "bfloat16" (bf16 activations, fp32 master weights).
        device: CUDA device index.
    """

    threads = 0

    def __init__(self, config: LlamaConfig, params: ParamBuffer | None = None, seed: int = 0,
                 dtype: str = "float32", device: int = 0):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected 'float32' or 'bfloat16', got {dtype!r}")
        if config.head_dim not in (64, 128):
            raise ValueError(f"CUDA training supports head_dim 64 or 128, got "
                             f"head_dim={config.head_dim} (d_model={config.d_model}, "
                             f"n_heads={config.n_heads})")
        mod = _cuda_module(device)
        self.config = config
        self.dtype = DTYPES[dtype]
        self.device = device
        self._host = params if params is not None else init_params(config, seed)
        c = config
        self._tm = mod.TrainModel(c.vocab, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn,
                                  c.eps, c.rope_base, c.tie_embeddings, self.dtype,
                                  self._host.size, dict(self._host.offsets), device)
        self._tm.set_params(self._host.data)
        self._stale = False  # host copy of the parameters behind the device
        self._frozen: set[str] = set()
        self._BT: tuple[int, int] | None = None

    @classmethod
    def from_model(cls, model, dtype: str = "float32", device: int = 0) -> CudaLlamaModel:
        """The GPU twin of a CPU LlamaModel (its parameters and frozen set)."""
        if getattr(model, "head_rows", model.config.vocab) < model.config.vocab:
            raise ValueError(f"head_rows={model.head_rows}: a vocabulary-prefix head trains on "
                             f"the CPU only")
        m = cls(model.config, params=model.params, dtype=dtype, device=device)
        m.frozen = set(model.frozen)
        return m

    @property
    def n_params(self) -> int:
        return self._host.size

    @property
    def frozen(self) -> set:
        return self._frozen

    @frozen.setter
    def frozen(self, names) -> None:
        self._frozen = set(names)
        self._tm.set_frozen(sorted(self._frozen))

    @property
    def params(self) -> ParamBuffer:
        """The parameters, copied from the device when they changed (treat as read-only: use
        load_params to change them)."""
        if self._stale:
            self._host.data[...] = self._tm.get_params()
            self._stale = False
        return self._host

    def load_params(self, data: np.ndarray) -> None:
        """Replaces all parameters (flat float32 [n_params]) on the host and the device."""
        self._host.data[...] = data
        self._tm.set_params(self._host.data)
        self._stale = False

    @property
    def grads(self) -> ParamBuffer:
        """A host copy of the gradients (a fresh ParamBuffer; for tests and inspection)."""
        return ParamBuffer(self.config, self._tm.get_grads())

    def forward(self, ids, targets=None, grad: bool = True):
        """As LlamaModel.forward: the mean cross-entropy with targets, else logits [B*T, V]
        (a host copy)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be (B, T), got shape {ids.shape}")
        B, T = ids.shape
        if T > self.config.context:
            raise ValueError(f"sequence length T={T} exceeds the context {self.config.context}")
        self._BT = (B, T)
        if targets is None:
            self._tm.forward(ids, None, False, self.config.vocab)
            return self._tm.logits(B * T, self.config.vocab)
        return float(self._tm.forward(ids, np.asarray(targets), grad, self.config.vocab))

    def logits(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int32)
        if ids.ndim == 1:
            ids = ids[None]
        return self.forward(ids)

    def zero_grad(self) -> None:
        self._tm.zero_grad()

    def backward(self) -> None:
        self._tm.backward()

    def grad_norm(self) -> float:
        """Global L2 norm of the gradients (reduced on the device in double)."""
        return math.sqrt(self._tm.grad_sum_squares())


class CudaAdamW:
    """pylm.train.optim.AdamW for a CudaLlamaModel: the same segments (weight decay on the
    matrices only, frozen parameters skipped) and formula, fused on the device."""

    def __init__(self, model: CudaLlamaModel, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1, trainable=None):
        self.model = model
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.t = 0
        p = model._host
        self.segments = decay_segments(p, p if trainable is None else trainable,
                                       self.weight_decay)

    def step(self, grads=None, lr: float = 1e-3, grad_scale: float = 1.0) -> None:
        """One update from the model's device gradients (`grads` is ignored: they live there)."""
        self.t += 1
        self.model._tm.adamw(self.segments, lr, self.beta1, self.beta2, self.eps, self.t,
                             grad_scale)
        self.model._stale = True

    @property
    def m(self) -> np.ndarray:
        return self.model._tm.get_moments()[0]

    @property
    def v(self) -> np.ndarray:
        return self.model._tm.get_moments()[1]

    def state_dict(self) -> dict:
        m, v = self.model._tm.get_moments()
        return {"m": m, "v": v, "t": self.t}

    def load_state_dict(self, d: dict) -> None:
        self.model._tm.set_moments(np.ascontiguousarray(d["m"], np.float32),
                                   np.ascontiguousarray(d["v"], np.float32))
        self.t = int(d["t"])
