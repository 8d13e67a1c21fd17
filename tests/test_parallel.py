"""Data parallel (``parallel.world_size``, issue #28): the key is hash-neutral and checked in one line; world sizes 1
and 2 give the same numbers — the first hypergradient and the parameters after 5 outer steps, float64, relative 1e-10
— on torch (gloo, 2 processes) and jax (2 host devices); a rank killed or hung ends the run as one ``error`` record
naming the rank; peers and naive's materialised chain are ``unsupported`` with the reason."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlo_bench.suite.engine.trees import tree_leaves
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.plan import ConfigError, prepare
from mlo_bench.suite.run.records import config_hash

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-10


def run_config(task: str, method: str, results_dir, world_size: int = 1, backend: str = "torch", steps: int = 5,
               **over) -> dict:
    preset = registry.get("task", task).presets["demo"]["task"]
    cfg = {"task": {"name": task, **copy.deepcopy(preset)}, "backend": {"name": backend}, "method": {"name": method},
           "seed": 0, "steps": steps, "inner_steps": 1, "log_every": 0, "dtype": "float64", "device": "cpu",
           "results_dir": str(results_dir), "progress": False, "hypergrad_check": False,
           "parallel": {"world_size": world_size, "timeout_s": 60}}
    cfg.update(over)
    return cfg


def rel(a, b) -> float:
    la, lb = tree_leaves(a), tree_leaves(b)
    num = np.sqrt(sum(float(np.sum((x - y) ** 2)) for x, y in zip(la, lb, strict=True)))
    return num / max(np.sqrt(sum(float(np.sum(x ** 2)) for x in la)), 1e-300)


def one_rank(cfg: dict) -> tuple[str, dict]:
    from mlo_bench.suite.run.execute import execute

    capture: dict = {}
    record = execute(prepare({**cfg, "parallel": {"world_size": 1}}), capture)
    return record["status"], capture


def assert_same(status1, cap1, result2, what: str) -> None:
    assert result2["status"] == status1, (what, result2["reason"], result2.get("traceback"))
    if status1 != "ok":
        return
    cap2 = result2["capture"]
    if cap1.get("first_hypergrad") is not None:
        assert rel(cap1["first_hypergrad"], cap2["first_hypergrad"]) < TOL, what
    assert rel(cap1["params"], cap2["params"]) < TOL, what


# ---- the key -----------------------------------------------------------------------------------------------------
def test_world_size_one_keeps_the_config_hash(tmp_path):
    base = prepare(run_config("mwn", "cg", tmp_path)).config
    without = {k: v for k, v in base.items() if k != "parallel"}
    assert config_hash(base) == config_hash(without)
    assert config_hash({**base, "parallel": {"world_size": 1, "timeout_s": 5}}) == config_hash(without)
    assert config_hash({**base, "parallel": {"world_size": 2, "timeout_s": 120}}) != config_hash(without)
    assert config_hash({**base, "parallel": {"world_size": 2, "timeout_s": 5}}) == \
        config_hash({**base, "parallel": {"world_size": 2, "timeout_s": 120}})


@pytest.mark.parametrize("value, words", [
    ({"world_size": 0}, "parallel.world_size must be an integer >= 1"),
    ({"world_size": "two"}, "parallel.world_size must be an integer >= 1"),
    ({"world_size": 2, "timeout_s": -1}, "parallel.timeout_s must be a positive number"),
    ({"world_sise": 2}, "unknown parallel key(s) ['world_sise']"),
])
def test_bad_parallel_values_are_one_line(tmp_path, value, words):
    with pytest.raises(ConfigError) as err:
        prepare(run_config("mwn", "cg", tmp_path, parallel=value))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_batch_reductions_are_the_plain_ones_on_one_rank():
    import torch

    from mlo_bench.backends.torch import TorchOps
    from mlo_bench.suite.models.batch import batch_mean, batch_sum

    ops, x = TorchOps(torch), torch.randn(7, dtype=torch.float64)
    assert torch.equal(batch_sum(ops, x), ops.sum(x)) and torch.equal(batch_mean(ops, x), ops.mean(x))


def test_peers_and_naive_materialised_refuse_with_the_reason():
    from mlo_bench.backends.betty import BettyBackend
    from mlo_bench.backends.naive import NaiveBackend, NaiveConfig

    assert "DDP" in BettyBackend().parallel_refusal(2) and "fails on CPU" in BettyBackend().parallel_refusal(2)
    assert BettyBackend().parallel_refusal(1) is None
    assert "chain=reverse" in NaiveBackend().parallel_refusal(2)
    assert NaiveBackend(NaiveConfig(chain="reverse")).parallel_refusal(2) is None


# ---- same numbers ------------------------------------------------------------------------------------------------
def _torch_agreement(tmp_path, cases):
    from mlo_bench.suite.run.execute import train_configs
    from mlo_bench.suite.run.ranks import launch

    configs = [run_config(task, method, tmp_path / "two", 2, backend) for task, method, backend in cases]
    two = launch(2, train_configs, (configs,), 60)
    assert len(two) == 2
    for (task, method, backend), cfg, result in zip(cases, configs, two[0], strict=True):
        status, cap = one_rank({**cfg, "results_dir": str(tmp_path / "one")})
        assert_same(status, cap, result, f"{task} × {backend} × {method}")
        assert two[1][configs.index(cfg)]["status"] == status


def test_torch_two_ranks_equal_one_rank_mwn_cg(tmp_path):
    _torch_agreement(tmp_path, [("mwn", "cg", "torch")])


def test_exact_at_two_ranks_batches_its_hessians_collectives(tmp_path):
    """exact's d×d Hessian at 2 ranks: the one-rank numbers, with the collectives inside ``jacrev`` batched over its
    d products (a handful per outer step; d = 1,210 products each made their own before)."""
    from mlo_bench.suite.run.execute import train_configs
    from mlo_bench.suite.run.ranks import launch

    cfg = run_config("mwn", "exact", tmp_path / "two", 2, steps=2)
    two = launch(2, train_configs, ([cfg],), 120)
    status, cap = one_rank({**cfg, "results_dir": str(tmp_path / "one")})
    assert_same(status, cap, two[0][0], "mwn × torch × exact")
    calls = two[0][0]["comm_calls"] / 2
    assert 0 < calls < 100, f"{calls} collectives per outer step: the Hessian's products are not batched"


def test_batch_norm_is_synchronised_two_ranks_equal_one_rank_on_resnet32(tmp_path):
    """SyncBN: MWN's ResNet-32 (31 batch-norm layers) at 2 ranks computes the one-rank numbers (float64, 2 steps;
    measured without the synchronised statistics: the parameters after 2 steps differed by 1.49 relative, 4 examples
    per rank)."""
    from mlo_bench.suite.run.execute import train_configs
    from mlo_bench.suite.run.ranks import launch

    cfg = run_config("mwn", "darts", tmp_path / "two", 2, steps=2, floor=False)
    cfg["task"].update(model="resnet32", batch_size=8, meta_batch_size=8, test_per_class=1, eval_batch_size=10)
    two = launch(2, train_configs, ([cfg],), 120)
    status, cap = one_rank({**cfg, "results_dir": str(tmp_path / "one")})
    assert_same(status, cap, two[0][0], "mwn resnet32 × torch × darts")


@pytest.mark.slow
def test_torch_two_ranks_equal_one_rank_every_method(tmp_path):
    methods = sorted(registry.names("method"))
    cases = [(task, m, "torch") for task in ("mwn", "weak_supervision", "data_selection") for m in methods]
    cases += [("mwn", m, "naive") for m in ("unroll", "cg")]
    _torch_agreement(tmp_path, cases)


JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mlo_bench.suite.run.execute import execute
    from mlo_bench.suite.run.plan import prepare
    cfgs, out = json.loads(sys.argv[1]), {}
    for cfg in cfgs:
        caps = []
        for ws in (1, 2):
            cap = {}
            rec = execute(prepare({**cfg, "parallel": {"world_size": ws}}), cap)
            caps.append((rec["status"], rec["reason"], rec["metrics"].get("world_size"), cap))
        out[cfg["method"]["name"]] = caps
    import pickle
    sys.stdout.buffer.write(pickle.dumps(out))
""")


def _jax_agreement(tmp_path, methods):
    import pickle

    pytest.importorskip("jax")
    cfgs = [run_config("mwn", m, tmp_path, backend="jax") for m in methods]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, json.dumps(cfgs)], capture_output=True, env=env,
                          cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = pickle.loads(proc.stdout)
    for m in methods:
        (s1, r1, w1, cap1), (s2, r2, w2, cap2) = out[m]
        assert (s1, w1, w2) == (s2, 1, 2), (m, r1, r2)
        if s1 == "ok":
            if cap1.get("first_hypergrad") is not None:
                assert rel(cap1["first_hypergrad"], cap2["first_hypergrad"]) < TOL, m
            assert rel(cap1["params"], cap2["params"]) < TOL, m


def test_jax_two_devices_equal_one_mwn_cg(tmp_path):
    _jax_agreement(tmp_path, ["cg"])


@pytest.mark.slow
def test_jax_two_devices_equal_one_every_method(tmp_path):
    _jax_agreement(tmp_path, sorted(registry.names("method")))


def test_jax_mesh_lays_the_batch_out_along_its_axis():
    script = textwrap.dedent("""
        import numpy as np
        from mlo_bench.backends.jax import JaxBackend
        b = JaxBackend()
        b.setup("float64", "cpu", 0)
        b.setup_parallel(2)
        x = b.shard_batch({"idx": np.arange(8)})["idx"]
        p = b.asarray(np.ones(3))
        print(len(x.addressable_shards), x.addressable_shards[0].data.shape[0], p.sharding.is_fully_replicated)
        try:
            b.shard_batch({"idx": np.arange(7)})
        except ValueError as exc:
            print("uneven:", exc)
    """)
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 4 True", proc.stderr[-2000:]
    assert "'idx' of 7 examples does not split evenly over parallel.world_size=2" in lines[1]


# ---- faults ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault, words", [("kill:1:30", "rank 1 died (killed by SIGKILL)"),
                                          pytest.param("hang:1:30", "rank 1 hung", marks=pytest.mark.slow)])
def test_a_rank_killed_or_hung_ends_as_one_error_record(tmp_path, monkeypatch, fault, words):
    from mlo_bench.suite.run.execute import execute

    monkeypatch.setenv("MLO_BENCH_RANK_FAULT", fault)
    cfg = run_config("mwn", "cg", tmp_path, 2, parallel={"world_size": 2, "timeout_s": 5})
    record = execute(prepare(cfg))
    assert record["status"] == "error" and words in record["reason"], record["reason"]
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 1


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def test_ctrl_c_to_the_parent_alone_stops_the_ranks_together_as_one_interrupted_record(tmp_path):
    """SIGINT to the process that started the ranks (not its group): it forwards the stop once, the ranks agree on it
    at the next step boundary (interrupt.agreeing) and end together; one ``interrupted`` record with rank 0's steps
    done, exit 130, and no rank left running."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "mlo_bench.suite.cli", "run", "task=bilevel_quadratic",
                             "method=soba", "inner_steps=1", "steps=1000000", "parallel.world_size=2",
                             "parallel.timeout_s=30", "isolate=false", "progress=false", f"results_dir={tmp_path}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ranks, deadline = [], time.monotonic() + 120
    while len(ranks) < 2 and time.monotonic() < deadline and proc.poll() is None:
        ranks = [k for k in _children(proc.pid) if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()]
        time.sleep(0.5)
    assert len(ranks) == 2, proc.communicate()[1][-2000:] if proc.poll() is not None else "no ranks started"
    time.sleep(15)  # past the ranks' set-up, into the step loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    (path,) = (tmp_path / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["status"] == "interrupted", record.get("reason")
    assert 0 < record["metrics"]["steps_done"] < 1000000 and record["metrics"]["world_size"] == 2
    assert "another rank" not in record["reason"], "rank 0 was signalled too"
    for pid in ranks:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_two_rank_mwn_demo_from_the_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mlo_bench.suite.cli", "run", "task=mwn", "+preset=demo", "steps=5",
                           "parallel.world_size=2", f"results_dir={tmp_path}", "progress=false"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    m = record["metrics"]
    assert record["status"] == "ok" and m["world_size"] == 2 and record["config"]["parallel"]["world_size"] == 2
    assert m["time_comm_s"] > 0 and m["comm_calls_per_step"] > 0 and len(m["peak_memory_bytes_per_rank"]) == 2
    assert m["examples_per_s"] > 0 and m["examples_per_step"] == 200


@pytest.mark.slow
def test_torchrun_on_one_node_writes_one_record(tmp_path):
    """The multi-node path (docs/parallel.md) on one node: torchrun's env:// rendezvous, rank 0 alone records."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                           "mlo_bench.suite.cli", "run", "task=mwn", "+preset=demo", "steps=3",
                           "parallel.world_size=2", f"results_dir={tmp_path}", "progress=false"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["metrics"]["world_size"] == 2
    assert len(record["metrics"]["peak_memory_bytes_per_rank"]) == 2


def test_the_scaling_section_computes_speedup_and_efficiency_from_the_records():
    import pandas as pd

    from mlo_bench.suite.report.sections import scaling

    config = {"task": {"name": "mwn"}, "seed": 0}
    records = [{"run_id": f"r{n}", "config": {**config, "parallel": {"world_size": n}}} for n in (1, 2)]
    records.append({"run_id": "other", "config": {**config, "task": {"name": "mwn", "hidden": 8},
                                                   "parallel": {"world_size": 2}}})
    wide = pd.DataFrame([
        {"run_id": "r1", "task": "mwn", "backend": "torch", "method": "cg", "status": "ok", "world_size": 1.0,
         "examples_per_s": 100.0, "time_step_s": 0.1, "loaded": False, "load": 0.5},
        {"run_id": "r2", "task": "mwn", "backend": "torch", "method": "cg", "status": "ok", "world_size": 2.0,
         "examples_per_s": 150.0, "time_comm_s": 0.02, "time_step_s": 0.08, "loaded": True, "load": 1.5,
         "peak_memory_bytes_per_rank.0": 2.0**20, "peak_memory_bytes_per_rank.1": 3 * 2.0**20},
        {"run_id": "other", "task": "mwn", "backend": "torch", "method": "cg", "status": "ok", "world_size": 2.0,
         "examples_per_s": 999.0, "time_step_s": 0.1, "loaded": False, "load": 0.5},
    ])
    table = scaling.rows(wide, records)
    assert list(table["world_size"]) == [1, 2]  # the other setting has no 1-rank run: no row
    two = table[table["world_size"] == 2].iloc[0]
    assert two["speedup"] == pytest.approx(1.5) and two["efficiency"] == pytest.approx(0.75)
    assert two["peak"] == 3 * 2**20 and two["loaded_only"]
    assert "1 of 2 rows were timed under load only" in scaling.explain(table)
