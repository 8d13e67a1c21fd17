"""The peers experiment composes its three cases, and the report's "Engines side by side" section puts a library's
runs beside the suite's own from the records alone (generic: no task or library named)."""

from __future__ import annotations

import copy
from pathlib import Path

from mlo_bench.suite.report.command import main as report_main
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.suite.run.records import commit_run


def test_the_cases_compose():
    quad = compose(["+experiment=peers", "+peers_case=quadratic"])
    assert quad.task.name == "quadratic" and quad.dtype == "float64"
    betty_sized = compose(["+experiment=peers", "+peers_case=mwn_betty"])
    assert betty_sized.task.name == "mwn" and betty_sized.task.model == "resnet32"
    assert betty_sized.task.weight_net_hidden == 100 and betty_sized.task.batch_size == 100
    assert compose(["+experiment=peers", "+peers_case=mwn_demo"]).task.model == "mlp"


def _run(results: Path, *overrides: str) -> dict:
    return execute(prepare(compose(["task.d=8", "steps=3", "progress=false", "isolate=false",
                                     f"results_dir={results}", *overrides])))


def test_the_section_puts_library_runs_beside_the_suites(tmp_path):
    results, out = tmp_path / "results", tmp_path / "report"
    base = _run(results, "method=neumann")
    assert base["status"] == "ok", base["reason"]
    assert _run(results, "method=cg")["status"] == "ok"
    # a library's run, as a peer engine records it (its provenance names the code path that ran)
    lib = copy.deepcopy(base)
    lib.pop("_path", None)
    lib.update(run_id="peer-run", backend="somelib", provenance={**base["provenance"], "peer_path": "its own code",
                                                                  "peer_notes": "it rounds its sums"})
    lib["config"] = {**base["config"], "backend": {"name": "somelib"}}
    lib["metrics"] = {**base["metrics"], "time_hypergrad_s": 2 * base["metrics"]["time_hypergrad_s"], "compile_s": 7.0}
    commit_run(results, "peer-run", lib)
    missing = copy.deepcopy(lib)
    missing.update(run_id="peer-missing", method="cg", status="unsupported", reason="not in somelib: its methods",
                   metrics={})
    missing["config"] = {**lib["config"], "method": {"name": "cg"}}
    commit_run(results, "peer-missing", missing)
    assert report_main([str(results), "--out", str(out), "--no-figures"]) == 0
    text = (out / "report.md").read_text()
    section = text.split("## Engines side by side", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| neumann")]
    assert len(rows) == 2 and any("**somelib**" in r and "| library |" in r for r in rows)
    peer_row = next(r for r in rows if "somelib" in r)
    assert "| 2× |" in peer_row, peer_row  # its hypergradient phase against the suite's fastest on the same method
    assert "| 7 s |" in peer_row, peer_row  # its compile time, apart from the step
    assert "somelib × cg: unsupported — not in somelib" in section
    assert "`somelib`: its own code" in section
    assert "`somelib`: it rounds its sums" in section.split("properties the peer engines measured", 1)[1]
