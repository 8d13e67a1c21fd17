"""Memory on the host. The memory guard (suite/measure/headroom.py): a run whose counted peak exceeds the free
memory is recorded as ``oom`` before its first step, with its counted figures, and a sweep in one process goes on;
``memory_guard=false`` runs it; the free memory is the host's MemAvailable on CPU, the backend's figure on a device.
The pinned glibc mmap threshold (suite/measure/host_malloc.py): checked in one line, applied in the worker,
recorded."""

from __future__ import annotations

import pytest

from mlo_bench.suite.measure import headroom
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import ConfigError, prepare

MEMINFO = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:    {} kB\nBuffers:  0 kB\n"


def test_host_available_bytes_reads_meminfo(tmp_path):
    info = tmp_path / "meminfo"
    info.write_text(MEMINFO.format(2048))
    assert headroom.host_available_bytes(str(info)) == 2048 * 1024
    info.write_text("MemTotal: 1 kB\n")
    assert headroom.host_available_bytes(str(info)) is None
    assert headroom.host_available_bytes(str(tmp_path / "missing")) is None


class _Backend:
    def __init__(self, device="cpu", free=None):
        self.device, self._free = device, free

    def free_memory_bytes(self):
        return self._free


def test_check_compares_the_counted_peak_with_the_free_memory(tmp_path, monkeypatch):
    info = tmp_path / "meminfo"
    info.write_text(MEMINFO.format(1024))  # 1 MiB available
    monkeypatch.setattr(headroom, "MEMINFO", str(info))
    headroom.check(_Backend(), 1024 * 1024)  # exactly what is free: runs
    with pytest.raises(headroom.PredictedOOM, match=r"counted peak of 0\.00 GiB exceeds the 0\.00 GiB MemAvailable"):
        headroom.check(_Backend(), 1024 * 1024 + 1)
    headroom.check(_Backend(), 10 * 2**30, enabled=False)
    headroom.check(_Backend(), None)  # nothing counted: nothing to compare
    with pytest.raises(headroom.PredictedOOM, match="free on cuda"):  # the backend's own figure wins
        headroom.check(_Backend("cuda", free=2**30), 2**31)
    headroom.check(_Backend("cuda", free=None), 2**40)  # a device that cannot say: no guard
    assert issubclass(headroom.PredictedOOM, MemoryError)


def _config(tmp_path, *extra):
    return compose(["task=quadratic", "task.d=8", "steps=3", "progress=false", "isolate=false", "floor=false",
                    f"results_dir={tmp_path}", *extra])


def test_a_run_that_cannot_fit_is_recorded_oom_before_its_first_step(tmp_path, monkeypatch):
    info = tmp_path / "meminfo"
    info.write_text(MEMINFO.format(0))  # nothing available
    monkeypatch.setattr(headroom, "MEMINFO", str(info))
    rec = execute(prepare(_config(tmp_path / "a")))
    assert rec["status"] == "oom", rec["reason"]
    assert rec["reason"].startswith("PredictedOOM: predicted out of memory: one outer step's counted peak")
    assert "memory_guard=false" in rec["reason"] and rec["metrics"]["peak_live_bytes"] > 0
    assert "resident_bytes" in rec["metrics"] and not rec["metrics"].get("steps_done"), "counted, never trained"
    ok = execute(prepare(_config(tmp_path / "b", "memory_guard=false")))
    assert ok["status"] == "ok" and ok["config_hash"] == rec["config_hash"], "the key changes no number"


def test_memory_guard_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigError, match=r"^memory_guard must be true or false \(got 'maybe'\)$"):
        prepare({**_config(tmp_path), "memory_guard": "maybe"})


def test_a_large_step_is_counted_on_fake_tensors_and_refused_before_it_compiles(tmp_path, monkeypatch):
    """Where the step is counted on fake tensors (torch, arguments over the threshold: 0 here), the guard counts and
    checks before compiling — a compile that warms up on real arguments (unroll's forward) would allocate the step's
    memory first; the figure is the one a count after compiling gives."""
    from mlo_bench.backends import _torch_counting

    monkeypatch.setattr(_torch_counting, "FAKE_FROM_BYTES", 0)
    ok = execute(prepare(_config(tmp_path / "a", "method=unroll")))
    assert ok["status"] == "ok" and ok["metrics"]["peak_live_bytes"] > 0
    plain = execute(prepare(_config(tmp_path / "b", "method=unroll", "memory_guard=false")))
    assert plain["metrics"]["peak_live_bytes"] == ok["metrics"]["peak_live_bytes"], "counted early or late: the same"
    assert plain["metrics"]["outer_loss"] == ok["metrics"]["outer_loss"], "counting early changes no number"
    info = tmp_path / "meminfo"
    info.write_text(MEMINFO.format(0))
    monkeypatch.setattr(headroom, "MEMINFO", str(info))
    rec = execute(prepare(_config(tmp_path / "c", "method=unroll")))
    assert rec["status"] == "oom" and "predicted out of memory" in rec["reason"]
    assert rec["metrics"]["peak_live_bytes"] == ok["metrics"]["peak_live_bytes"]
    assert "compile_s" not in rec["metrics"], "refused before anything compiled"


@pytest.mark.parametrize("value,ok", [(None, True), (0, True), (1048576, True), (32 * 2**20, True),
                                      (-1, False), (32 * 2**20 + 1, False), (True, False), ("1MiB", False)])
def test_malloc_mmap_threshold_values(value, ok):
    from mlo_bench.suite.measure import host_malloc

    problem = host_malloc.validate(value)
    assert (problem is None) == ok
    if not ok:
        assert problem.startswith("malloc_mmap_threshold must be null or bytes in [0, 33554432]")
        assert "\n" not in problem


def test_a_pinned_mmap_threshold_is_applied_in_the_worker_and_recorded(tmp_path):
    """In an isolated worker (glibc's setting is for the life of a process: the test process keeps its own)."""
    from mlo_bench.suite.measure import host_malloc

    if host_malloc._libc() is None:
        pytest.skip("no glibc mallopt here")
    rec = execute(prepare(compose(["task=quadratic", "task.d=8", "steps=2", "progress=false", "isolate=true",
                                   "floor=false", "malloc_mmap_threshold=1048576", f"results_dir={tmp_path}"])))
    assert rec["status"] == "ok" and rec["provenance"]["malloc_mmap_threshold"] == 1048576
    plain = execute(prepare(compose(["task=quadratic", "task.d=8", "steps=2", "progress=false", "isolate=true",
                                     "floor=false", f"results_dir={tmp_path / 'plain'}"])))
    assert "malloc_mmap_threshold" not in plain["provenance"] and plain["config_hash"] == rec["config_hash"]
    assert plain["metrics"]["outer_loss"] == rec["metrics"]["outer_loss"], "it changes no number"
