"""bf16 / fp16 against fp32 matmul speed on this machine, torch and jax, interleaved in one process (ratios only).

A CPU without native bf16 / fp16 units (no AVX512_BF16, AMX or AVX512_FP16) emulates them: low precision can be slower
than fp32 there. ``python benchmarks/precision_matmul.py [N] [REPEATS]`` prints the median seconds of an N×N matmul in
each precision and its ratio to fp32 (the figures in docs/precision.md came from it).
"""

from __future__ import annotations

import statistics
import sys
import time


def _median(fn, repeats: int) -> float:
    fn()  # warm-up (and jax's compile)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(n: int = 512, repeats: int = 20) -> dict[str, dict[str, float]]:
    import torch

    torch.set_num_threads(1)
    out: dict[str, dict[str, float]] = {"torch": {}, "jax": {}}
    a = torch.randn(n, n)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        x = a.to(dtype)
        out["torch"][name] = _median(lambda x=x: x @ x, repeats)
    try:
        import jax
        import jax.numpy as jnp

        mm = jax.jit(lambda x: x @ x)
        for name, dtype in (("fp32", jnp.float32), ("bf16", jnp.bfloat16), ("fp16", jnp.float16)):
            x = jnp.asarray(a.numpy(), dtype)
            out["jax"][name] = _median(lambda x=x: mm(x).block_until_ready(), repeats)
    except ImportError:
        del out["jax"]
    for lib, times in out.items():
        print(lib, " ".join(f"{k} {v * 1e3:.2f} ms ({v / times['fp32']:.2f}x)" for k, v in times.items()))
    return out


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
