"""Paper-shaped tables from a task's declarations (Betty Table 1 for mwn): rows, columns, per-backend blocks, paired
verdicts computed from records, seeds needed, runs timed under load left out of time verdicts, `variant=NAME`."""

from __future__ import annotations

import numpy as np
import pytest

from mlo_bench.suite.plugins import registry
from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report import verdicts as V
from mlo_bench.suite.report.render.markdown import table as md_table
from mlo_bench.suite.report.runs import prepare as prepare_runs
from mlo_bench.suite.report.runs import variant_of
from mlo_bench.suite.report.sections import papers
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.plan import prepare

TABLE = specs.paper("mwn").tables[0]
SPEC = {v.name: v for v in specs.paper("mwn").variants}


def _rec(variant: str, backend: str, imbalance: float, seed: int, acc: float, live: float, time_s: float,
         load: float | None = None, **task) -> dict:
    v = SPEC[variant]
    flat = {**v.overrides, **{f"backend.{k}": x for k, x in (v.backend_knobs.get(backend) or {}).items()}}
    config = {"task": {"name": "mwn", "dataset": "digits", "imbalance_factor": imbalance, **task},
              "backend": {"name": backend}, "method": {"name": v.method}, "seed": seed, "steps": 100,
              "inner_steps": 1, "dtype": "float32"}
    for key, value in flat.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    prov = {} if load is None else {"loadavg_start": load, "loadavg_end": load, "cpu_count": 2}
    return {"task": "mwn", "backend": backend, "method": v.method, "seed": seed, "status": "ok", "config": config,
            "run_id": f"{variant}-{backend}-{imbalance}-{seed}", "provenance": prov,
            "metrics": {"test_accuracy": acc, "peak_live_bytes": live, "peak_memory_bytes": 1e8,
                        "time_total_s": time_s}}


def _records(darts_acc: float, darts_live: float, rng: np.random.Generator, backends=("torch", "naive"),
             seeds=range(3), noise: float = 0.001) -> list[dict]:
    base = {"erm": 0.70, "original-unrolled": 0.80, "unroll-1": 0.80, "cg": 0.78, "neumann": 0.79,
            "darts-1": darts_acc, "darts-5": 0.82}
    out = []
    for backend in backends:
        for imbalance in (10.0, 100.0):
            for seed in seeds:
                shift = 0.02 * rng.standard_normal()  # a seed's data and batches: shared by every variant
                for name, acc in base.items():
                    drop = 0.15 if imbalance == 100 and name == "erm" else 0.0
                    live = darts_live if name == "darts-1" else 4e5 if name == "original-unrolled" else 2e5
                    time_s = 10.0 + 0.1 * seed + (2 if name in ("original-unrolled", "unroll-1") else 0)
                    out.append(_rec(name, backend, imbalance, seed, acc - drop + shift + noise * rng.standard_normal(),
                                    live * (1 + 0.001 * seed), time_s))
    return out


def test_variant_is_a_hydra_option_for_the_task_and_backend():
    registry.discover()
    plan = prepare(compose(["task=mwn", "variant=darts-5", "backend=naive"]))
    assert plan.method.name == "darts" and plan.inner_steps == 5 and plan.task_cfg.reweight is True
    assert plan.config["backend"]["chain"] == "reverse", "on naive the variant brings the reverse chain"
    plan = prepare(compose(["task=mwn", "variant=erm", "backend=torch", "method.name=first_order"]))
    assert plan.task_cfg.reweight is False
    assert "mwn" in (specs.paper("mwn").variants[0].doc + " mwn")


def test_a_recorded_variant_picks_among_variants_its_config_matches_alike():
    """mwn_text's memory variant ``darts`` and Table 2's ``mwn-fp32`` have the same config: the record's name decides;
    without one the first declared wins; a bf16 run recorded as either stands for neither."""
    config = {"task": {"name": "mwn_text", "reweight": True}, "method": {"name": "darts"}, "inner_steps": 1,
              "precision": {"name": "fp32"}, "seed": 0}
    def run(variant=None, precision="fp32"):
        rec = {"task": "mwn_text", "backend": "torch", "method": "darts", "seed": 0, "status": "ok", "metrics": {},
               "config": {**config, "precision": {"name": precision}, **({"variant": variant} if variant else {})}}
        return prepare_runs([rec])[0]

    assert variant_of(run("darts")) == "darts" and variant_of(run("mwn-fp32")) == "mwn-fp32"
    assert variant_of(run()) == "mwn-fp32"
    assert variant_of(run("darts", "bf16")) is None and variant_of(run("mwn-fp32", "bf16")) is None


def test_records_are_recognised_as_their_variant():
    runs = prepare_runs(_records(0.8, 3e5, np.random.default_rng(0), seeds=[0]))
    names = {(r.backend, r.flat["task.imbalance_factor"], variant_of(r)) for r in runs}
    assert len(names) == len(runs), "every run stands for exactly one variant"
    unroll = next(r for r in runs if variant_of(r) == "unroll-1")
    unroll.flat["ordering"] = "lookahead"
    assert variant_of(unroll) == "original-unrolled", "the ordering tells the original MWN from unroll-1"
    unroll.config["variant"] = "original-unrolled"
    assert variant_of(unroll) == "original-unrolled", "a recorded variant its config matches"
    unroll.config["variant"] = "unroll-1"
    assert variant_of(unroll) is None, "+variant=unroll-1 ordering=lookahead is overridden away from unroll-1"
    unroll.flat["ordering"] = "inner_first"
    unroll.flat["precision.name"] = "bf16"
    assert variant_of(unroll) is None, "nor is a bf16 run Table 1's unroll-1 (a sibling variant sets the precision)"


def test_table_has_a_block_per_backend_a_row_per_variant_and_a_column_per_imbalance_factor():
    records = _records(0.80, 3e5, np.random.default_rng(0))
    records.append(_rec("cg", "torch", 10.0, 7, 0.1, 1.0, 1.0, hidden=99))  # another setting: never pooled
    records.append({**_rec("cg", "torch", 10.0, 8, 0.0, 1.0, 1.0), "status": "diverged"})  # not ok: not counted
    result = papers.evaluate("mwn", TABLE, records)
    assert set(result["blocks"]) == {"torch", "naive"}
    torch = result["blocks"]["torch"]
    assert torch["columns"] == [10.0, 100.0] and torch["settings"] == 2
    assert {k: len(v) for k, v in torch["rows"].items()} == {v: 6 for v in TABLE.variants}
    sec = papers.section("mwn", TABLE, result)
    text = "\n".join(md_table(b) for b in sec.blocks if hasattr(b, "header"))
    assert "IF 10" in text and "IF 100" in text and "darts-5" in text and "inner_first" in text
    assert "(3)" in text  # mean ± std over the 3 seeds


@pytest.mark.parametrize("darts_acc,darts_live,verdict", [
    (0.80, 3e5, V.SUPPORTED),       # same accuracy, less memory, less time
    (0.70, 3e5, V.NOT_SUPPORTED),   # clearly less accurate
    (0.80, 5e5, V.NOT_SUPPORTED),   # more memory than the unrolled original
])
def test_darts_versus_original_verdict_is_computed_per_backend(darts_acc, darts_live, verdict):
    result = papers.evaluate("mwn", TABLE, _records(darts_acc, darts_live, np.random.default_rng(1)))
    mwn_vs_erm, darts_vs_orig = result["claims"][:2]
    assert darts_vs_orig["verdict"] == verdict, darts_vs_orig["lines"]
    assert darts_vs_orig["backends"] == {"torch": verdict, "naive": verdict}
    # MWN vs ERM is judged at the highest imbalance only: one line per reweighting variant and backend
    assert len(mwn_vs_erm["lines"]) == 12 and all("IF 100" in ln.label for ln in mwn_vs_erm["lines"])
    assert mwn_vs_erm["verdict"] == V.SUPPORTED, mwn_vs_erm["lines"]
    assert all("paired, n=3" in ln.measured for ln in mwn_vs_erm["lines"])


def test_pairing_removes_the_seed_effect_that_an_unpaired_test_cannot():
    """A seed shifts every variant's accuracy by ±2%; darts-1 is 1% better on every seed. Paired: supported."""
    rng = np.random.default_rng(3)
    shifts = 0.02 * rng.standard_normal(5)
    num = [0.81 + s for s in shifts]
    den = [0.80 + s for s in shifts]
    ratio, lo, hi, n, sd = stats.paired_ratio(list(zip(num, den, strict=True)))
    assert n == 5 and lo > 1, (lo, hi)
    _, ulo, uhi, _, _ = stats.ratio_interval(num, den)
    assert ulo < 1 < uhi, "unpaired, the seed-to-seed spread hides the difference"


def test_inconclusive_comparisons_say_how_many_seeds_they_need():
    records = _records(0.80, 3e5, np.random.default_rng(2), backends=("torch",), seeds=range(2), noise=0.03)
    result = papers.evaluate("mwn", TABLE, records)
    lines = papers.seeds_lines(result)
    inconclusive = [ln for c in result["claims"] for ln in c["lines"] if ln.verdict == V.INCONCLUSIVE]
    assert inconclusive and len(lines) == sum(ln.needed is not None for ln in inconclusive) > 0
    assert all("seeds" in line and "≈" in line for line in lines)
    assert stats.seeds_needed(1.05, 0.05) == 7  # t(0.975, 6)·0.05/√7 < log 1.05 ≤ t(0.975, 5)·0.05/√6
    assert stats.seeds_needed(1.0, 0.05) is None


def test_runs_timed_under_load_are_left_out_of_time_verdicts():
    records = _records(0.80, 3e5, np.random.default_rng(4), backends=("torch",))
    for r in records:  # darts-1 timed on a busy machine: its times would say it is 10x slower
        if r["run_id"].startswith("darts-1-"):
            r["provenance"] = {"loadavg_start": 5.0, "loadavg_end": 6.0, "cpu_count": 2}
            r["metrics"]["time_total_s"] *= 10
    result = papers.evaluate("mwn", TABLE, records)
    time_line = next(ln for ln in result["claims"][1]["lines"] if "time_total_s" in ln.label)
    assert time_line.verdict == V.NOT_MEASURED and "under load" in time_line.note
    assert time_line.measured.startswith("⚠ ") and "paired" in time_line.measured, "the loaded ratio is shown, unjudged"
    sec = papers.section("mwn", TABLE, result)
    text = "\n".join(md_table(b) for b in sec.blocks if hasattr(b, "header"))
    assert "⚠6 loaded" in text, "the table marks the loaded runs' time figures"


def test_rates_per_second_are_timed_metrics_too():
    """steps/s is read off the same clock as seconds: runs timed under load leave a steps/s comparison as well."""
    assert specs.timed(None, "steps_per_s") and specs.timed(None, "time_total_s")
    assert not specs.timed(None, "peak_live_bytes")
    quiet = [_rec("darts-1", "torch", 100.0, s, 0.8, 3e5, 10.0) for s in range(3)]
    busy = [_rec("erm", "torch", 100.0, s, 0.7, 3e5, 10.0, load=5.0) for s in range(3)]
    for r in quiet + busy:
        r["metrics"]["steps_per_s"] = 10.0 if r in quiet else 1.0  # load made erm look 10x slower
    num, den = prepare_runs(quiet), prepare_runs(busy)
    assert papers.measure(num, den, "steps_per_s") is None, "no quiet run on one side: nothing to judge"
    shown = papers.measure(num, den, "steps_per_s", keep_loaded=True)
    assert shown is not None and shown.ratio == pytest.approx(10.0)
    assert papers.measure(num, den, "test_accuracy") is not None, "quality metrics keep loaded runs"


def test_missing_variant_is_not_measured_and_no_runs_is_no_section():
    records = [r for r in _records(0.8, 3e5, np.random.default_rng(2)) if r["method"] != "none"]  # no ERM
    result = papers.evaluate("mwn", TABLE, records)
    assert result["claims"][0]["verdict"] == V.NOT_MEASURED
    assert papers.evaluate("mwn", TABLE, []) is None
    assert papers.sections([]) == []


def _ds_records(load: float | None = None) -> list[dict]:
    """Two seeds of every row of data_selection's table on torch (made-up metrics)."""
    table = specs.paper("data_selection").tables[0]
    variants = {v.name: v for v in specs.paper("data_selection").variants}
    records = []
    for name in table.variants:
        v = variants[name]
        for seed in range(2):
            config = {"task": {"name": "data_selection", "domain": "encodings"}, "backend": {"name": "torch"},
                      "method": {"name": v.method}, "seed": seed, "steps": 10, "inner_steps": 1, "dtype": "float32"}
            for key, value in v.overrides.items():
                node = config
                *parents, leaf = key.split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = value
            prov = {} if load is None else {"loadavg_start": load, "loadavg_end": load, "cpu_count": 2}
            records.append({"task": "data_selection", "backend": "torch", "method": v.method, "seed": seed,
                            "status": "ok", "config": config, "run_id": f"{name}-{seed}", "provenance": prov,
                            "metrics": {"specific_loss": 2.0 - 0.1 * seed, "selection_precision": 0.3,
                                        "base_rate": 0.05, "specific_loss_finetuned": 1.5,
                                        "steps_per_s": 10.0 + seed}})
    return records


def test_a_table_that_declares_a_figure_gets_it_with_its_reference_line(tmp_path):
    """data_selection's table asks for specific_loss and selection_precision by row, base_rate as a dashed line."""
    from mlo_bench.suite.report.render.doc import Figure

    table = specs.paper("data_selection").tables[0]
    assert "selection_precision" in table.figure and table.references["selection_precision"] == "base_rate"
    records = _ds_records()
    [sec] = [s for s in papers.sections(records, tmp_path) if s.title.startswith("data_selection")]
    [fig] = [b for b in sec.blocks if isinstance(b, Figure)]
    assert fig.path.exists() and fig.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "base_rate" in fig.caption and "selection_precision" in fig.caption
    assert not [b for s in papers.sections(records) for b in s.blocks if isinstance(b, Figure)], "no folder: no figure"


def test_a_throughput_claim_on_loaded_runs_says_so():
    """The paper's steps/s ratios (DDS / generic only): with every run timed under load, not measured, and why."""
    from mlo_bench.suite.report.sections import claims

    table = [c for c in claims.load_claims() if c.claim_id.startswith("grangier-speed-")]
    [quiet] = [r for r in claims.evaluate(table, _ds_records()) if r.claim.claim_id == "grangier-speed-dds"]
    assert quiet.verdict != V.NOT_MEASURED, quiet.why
    [busy] = [r for r in claims.evaluate(table, _ds_records(load=5.0)) if r.claim.claim_id == "grangier-speed-dds"]
    assert busy.verdict == V.NOT_MEASURED and "under load" in busy.why
    loaded = claims.evaluate(table, _ds_records(load=5.0))
    [headline] = [b.text for b in claims.section(loaded).blocks[:1]]
    n = sum(r.verdict == V.NOT_MEASURED and r.why == claims.LOADED_WHY for r in loaded)
    assert n >= 1 and f"not measured** ({n} of them time claims whose runs were all timed under load)" in headline
    [quiet_line] = [b.text for b in claims.section(claims.evaluate(table, _ds_records())).blocks[:1]]
    assert "timed under load" not in quiet_line, "a quiet machine's headline names no loaded claim"
