"""CUDA-event timing shared by the GPU benchmarks (run from benchmarks/, like torch_llama)."""

from __future__ import annotations


def cuda_seconds(torch, fn, reps: int) -> float:
    """Mean seconds per call of fn over reps back-to-back calls, timed with CUDA events after
    3 warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps * 1e-3
