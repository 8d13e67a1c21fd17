"""The ``threads`` key (suite/measure/threads.py) and the load flags of provenance (suite/measure/provenance.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlo_bench.suite.measure import provenance, threads
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.plan import ConfigError, prepare
from mlo_bench.suite.run.records import config_hash


def test_threads_default_is_one_and_keeps_the_hash_of_records_made_before_the_key():
    cfg = prepare(compose(["progress=false"])).config
    assert cfg["threads"] == 1
    bare = {k: v for k, v in cfg.items() if k != "threads"}
    assert config_hash(cfg) == config_hash(bare)
    assert config_hash({**cfg, "threads": 2}) != config_hash(cfg)


@pytest.mark.parametrize("value", [-1, "two", True])
def test_a_bad_threads_value_is_one_line_naming_the_key(value):
    with pytest.raises(ConfigError, match="^threads must be"):
        prepare({**prepare(compose([])).config, "threads": value})


def test_env_for_carries_the_count_and_xla_flags_only_for_one_thread(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    one, two = threads.env_for(1), threads.env_for(2)
    assert one["OMP_NUM_THREADS"] == "1" and "--xla_cpu_multi_thread_eigen=false" in one["XLA_FLAGS"]
    assert all(f.startswith("--") for f in one["XLA_FLAGS"].split()), "XLA stops reading at a token without --"
    assert two["MKL_NUM_THREADS"] == "2" and "XLA_FLAGS" not in two
    assert threads.env_for(0) == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    assert threads.env_for(1)["XLA_FLAGS"].count("xla_cpu_multi_thread_eigen") == 1, "no flag given twice"


def test_apply_sets_torch_and_blas_in_a_fresh_process():
    code = ("import json, torch; from mlo_bench.suite import threads; a = threads.apply(1); "
            "print(json.dumps({'applied': a, 'torch': torch.get_num_threads()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    got = json.loads(out.stdout)
    assert got["torch"] == 1 and got["applied"]["requested"] == 1 and got["applied"]["xla"] == 1
    assert all(n == 1 for n in got["applied"]["blas"].values())


def test_busy_compares_the_largest_load_with_the_cpus():
    assert provenance.busy({"loadavg_start": 0.5, "loadavg_end": 1.0, "loadavg_max": 2.5, "cpu_count": 2}) is True
    assert provenance.busy({"loadavg_start": 0.5, "loadavg_end": 1.9, "cpu_count": 2}) is False
    assert provenance.busy({"cpu_count": 2}) is None


def test_a_run_records_threads_applied_and_flags_load_above_the_cores(tmp_path, monkeypatch, capsys):
    from mlo_bench.suite.run.execute import execute

    monkeypatch.setattr(provenance.os, "getloadavg", lambda: (64.0, 1.0, 1.0))
    monkeypatch.setattr(provenance.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(provenance, "_WARNED", [])
    rec = execute(prepare(compose(["task.d=8", "steps=3", "progress=false", "threads=1", "hypergrad_check=false",
                                    f"results_dir={tmp_path}"])))
    p = rec["provenance"]
    assert rec["status"] == "ok" and p["threads"]["applied"]["requested"] == 1 and p["threads"]["torch"] == 1
    assert p["loadavg_max"] == 64.0 and p["loaded"] is True
    assert "warning: load average 64.0 exceeded the 2 CPUs" in capsys.readouterr().err
