"""Grangier et al. (2024)'s reference runs as the ``data_selection`` task's paper: its metrics, variants (the table's
rows and the suite's own methods on the same problem), the reference table and its claims (read by the report).
Not a task plugin: ``tasks/data_selection.py`` declares ``paper = PAPER``; it registers nothing."""

from __future__ import annotations

from mlo_bench.suite.contract import ClaimRule, Comparison, MetricSpec, Paper, PaperTable, TableClaim, Variant

_NAIVE = {"naive": {"chain": "reverse"}}  # naive runs every method with its reverse chain
_SELECT = {"task.program": "select"}
VARIANTS = (
    Variant("generic-only", "none", {"task.program": "generic"}, _NAIVE, label="generic only",
            doc="θ on uniform generic batches (method none)"),
    Variant("mixing", "none", {"task.program": "mixing"}, _NAIVE, label="mixing",
            doc="each step a generic and a specific batch, loss (1 − mix)·generic + mix·specific (method none)"),
    Variant("classifier", "none", {"task.program": "classifier"}, _NAIVE, label="classifier",
            doc="the top filter_fraction of the pool by a specific-vs-generic ridge classifier (method none)"),
    Variant("cds", "none", {"task.program": "cds"}, _NAIVE, label="CDS",
            doc="contrastive data selection: top filter_fraction by specific − generic bigram log-likelihood"),
    Variant("dds", "dds", _SELECT, _NAIVE, label="DDS", doc="bilevel selection, one soft SGD step looked through"),
    Variant("anograd", "anograd", _SELECT, _NAIVE, label="anograd",
            doc="bilevel selection, aligned normalised gradients"),
    Variant("soba", "soba", _SELECT, _NAIVE, label="SOBA", doc="bilevel selection, SOBA's carried H⁻¹v estimate"),
    Variant("select-cg", "cg", {**_SELECT, "method.negative_curvature": "stop"}, _NAIVE,
            label="bilevel selection (cg)", doc="the same bilevel problem with the suite's cg, stopped at the LM "
            "Hessian's first non-positive curvature (classic CG blows up on it: methods/cg.py)"),
    *(Variant(f"select-{m}", m, _SELECT, _NAIVE, label=f"bilevel selection ({m})",
              doc=f"the same bilevel problem with the suite's {m}") for m in ("neumann", "darts", "unroll")),
)
BILEVEL = ("soba", "dds", "anograd")
_FT = "bilevel selection after fine-tuning (paper: {} {} vs generic only 0.864 per byte)"
PAPER = Paper(
    metrics=(
        MetricSpec("specific_loss", "lower", "nats/byte", doc="held-out specific loss per byte (the quality)"),
        MetricSpec("specific_loss_finetuned", "lower", "nats/byte",
                   doc="held-out specific loss per byte after fine-tuning on the specific set"),
        MetricSpec("generic_loss", "lower", "nats/byte", quality=False, doc="held-out generic loss per byte"),
        MetricSpec("generic_loss_finetuned", "lower", "nats/byte", quality=False),
        MetricSpec("selection_precision", "higher", "fraction", quality=False,
                   doc="share of the specific domain among kept generic examples"),
        MetricSpec("base_rate", None, "fraction", doc="share of the specific domain in the generic pool"),
        MetricSpec("precision_lift", "higher", "", quality=False, doc="selection_precision / base_rate"),
        MetricSpec("n_generic", None, "count"),
        MetricSpec("n_specific", None, "count"),
        MetricSpec("corpus", kind="text", doc="the corpus's provenance (Python version, files, bytes per domain)"),
    ),
    variants=VARIANTS,
    tables=(PaperTable(
        "Online data selection (Grangier et al. 2024, reference runs C4 → RCV1; our analogue: stdlib domains)",
        ("generic-only", "mixing", "soba", "dds", "anograd", "cds", "classifier"),
        column="task.domain", column_label="specific domain", quality="specific_loss",
        cost=("specific_loss_finetuned", "selection_precision", "steps_per_s"), treatments=("task.program",),
        claims=(
            TableClaim("bilevel selection beats generic only on the specific loss",
                       tuple(Comparison(m, "generic-only", "specific_loss", "lower") for m in BILEVEL)),
            TableClaim("bilevel selection keeps the specific domain above its base rate",
                       tuple(Comparison(m, "generic-only", "selection_precision", "higher") for m in BILEVEL)),
            TableClaim("mixing is the strongest before fine-tuning",
                       tuple(Comparison("mixing", m, "specific_loss", "lower")
                             for m in (*BILEVEL, "cds", "classifier", "generic-only"))),
            TableClaim("after fine-tuning the bilevel methods lead",
                       tuple(Comparison(m, other, "specific_loss_finetuned", "lower")
                             for m in BILEVEL for other in ("mixing", "generic-only"))),
            TableClaim("throughput orders generic > mixing > dds ≈ anograd > soba",
                       (Comparison("generic-only", "mixing", "steps_per_s", "higher"),
                        Comparison("mixing", "dds", "steps_per_s", "higher"),
                        Comparison("dds", "anograd", "steps_per_s", "match"),
                        Comparison("anograd", "soba", "steps_per_s", "higher"))),
        ), match_tolerance=0.1, figure=("specific_loss", "selection_precision"),
        references={"selection_precision": "base_rate"}),),
    size="task.b_large", size_label="b_large", size_metrics=("time_select_s", "time_step_s"),
    claims="data_selection.csv",
    baselines={("grangier2024-code", "reference-runs"): "generic-only"},
    settings={"c4-rcv1": {}, "c4-rcv1-finetuned": {}},
    paper_data={"task.data": "files"},
    claim_metrics={"specific_loss": ("specific_loss",), "steps_per_second": ("steps_per_s",)},
    rules={f"grangier-c4rcv1-ft-{m}": ClaimRule("ratio", "specific_loss_finetuned", m, "generic-only",
                                                _FT.format(m, v), expected=v / 0.864)
           for m, v in (("soba", 0.819), ("dds", 0.822))},
)
