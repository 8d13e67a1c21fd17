"""Counting on fake tensors (``backends/_torch_counting.counted``): the counted FLOPs and peak live bytes of a run are
those of the same run counted on real tensors — for every method, in fp32 and through autocast — and a program the
fake tensors cannot run (it reads a value) is counted for real, with the same figures."""

from __future__ import annotations

import pytest
import torch

import mlo_bench.backends._torch_counting as counting
from mlo_bench.backends import torch as torch_backend
from mlo_bench.suite.plugins import registry

pytestmark = pytest.mark.filterwarnings("ignore")
COUNTED = counting.counted  # the function itself: the spies below wrap it, never each other


def _counts(tmp_path, monkeypatch, fake: bool, overrides: list[str]) -> tuple[str, dict, list[str]]:
    from mlo_bench.suite.run.compose import compose
    from mlo_bench.suite.run.execute import execute
    from mlo_bench.suite.run.plan import prepare

    monkeypatch.setattr(counting, "FAKE_FROM_BYTES", 0 if fake else 1 << 62)
    seen: list[str] = []

    def spy(*args, **kwargs):
        mode = COUNTED(*args, **kwargs)
        if mode is not None:  # None: the memory guard's early fake-only count found the arguments small
            seen.append(mode.on)
        return mode

    monkeypatch.setattr(torch_backend, "counted", spy)  # the FLOPs
    monkeypatch.setattr(counting, "counted", spy)  # the bytes (live_peak)
    rec = execute(prepare(compose([*overrides, "backend=torch", "steps=1", "isolate=false", "floor=false",
                                   "hypergrad_check=false", "progress=false",
                                   f"results_dir={tmp_path / ('fake' if fake else 'real')}"])))
    return rec["status"], {k: rec["metrics"].get(k) for k in ("peak_live_bytes", "flops_hypergrad")}, seen


@pytest.mark.parametrize("method", [m for m in registry.names("method") if m not in ("saba", "srba", "mrbo")])
def test_fake_counts_equal_real_counts_on_every_method(tmp_path, monkeypatch, method):
    status, fake, on_fake = _counts(tmp_path, monkeypatch, True, ["task=mwn", "+preset=demo", f"method={method}"])
    assert status == "ok"
    _, real, on_real = _counts(tmp_path, monkeypatch, False, ["task=mwn", "+preset=demo", f"method={method}"])
    assert set(on_fake) == {"fake"} and set(on_real) == {"real"}
    assert fake["peak_live_bytes"] > 0
    assert fake == real


@pytest.mark.parametrize("method", ["cg", "darts", "unroll", "none"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fake_counts_equal_real_counts_under_autocast(tmp_path, monkeypatch, method, precision):
    args = ["task=mwn_text", "task.size=tiny", f"method={method}", f"precision={precision}"]
    _, fake, on_fake = _counts(tmp_path, monkeypatch, True, args)
    _, real, _ = _counts(tmp_path, monkeypatch, False, args)
    assert set(on_fake) == {"fake"}
    assert fake == real


def test_a_program_that_reads_a_value_is_counted_for_real(monkeypatch):
    monkeypatch.setattr(counting, "FAKE_FROM_BYTES", 0)
    x = torch.ones(1000, dtype=torch.float64)

    def reads(x):
        y = x * 2.0  # 8,000 bytes
        if float(y.sum()) > 0:  # a value: fake tensors cannot say
            return y * 3.0  # 8,000 more, both alive
        return y

    def pure(x):
        y = x * 2.0
        return y * 3.0

    live = lambda args: counting.live_bytes_mode(torch)  # noqa: E731
    assert counting.counted(torch, reads, (x,), live).on == "real"
    assert counting.counted(torch, reads, (x,), live).peak == 16_000  # the sum: dead before y * 3
    fake = counting.counted(torch, pure, (x,), live)
    assert fake.on == "fake" and fake.peak == 16_000


def test_small_arguments_are_counted_for_real():
    x = torch.ones(10)
    mode = counting.counted(torch, lambda x: x * 2, (x,), lambda args: counting.live_bytes_mode(torch))
    assert mode.on == "real" and mode.peak == 40
