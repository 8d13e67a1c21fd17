"""Scalable online data selection (Grangier, Ablin & Hannun, TMLR 2024, Algorithm 1) on byte-level text.

A large *generic* pool and a small *specific* set that reflects the test conditions. A weight model w_φ (the top
level ``weights``, a byte CNN: :func:`mlo_bench.suite.models.byte_models.byte_cnn`, w = exp(logit)) scores generic
sequences; the language model θ (the lower level ``lm``, a causal conv net:
:func:`~mlo_bench.suite.models.byte_models.byte_lm`) trains on generic data filtered by those scores; φ learns so
that this training lowers θ's loss on the specific set. Per outer step (Algorithm 1): the runner's select phase
scores ``b_large`` uniform generic candidates with w_φ and keeps ``b_small`` of them sampled without replacement
∝ w_φ (:class:`~mlo_bench.suite.contract.Selection`); θ takes one plain step on the kept batch; φ's hypergradient
comes from the uniform sub-batch B' (the first ``b_small`` candidates) and a specific batch (the top level's loss:
θ's mean loss per byte on it).

The lower loss is written so that every method of the suite differentiates *that* algorithm, with no special case:

    f(θ, φ) = mean_{kept} ℓ(x; θ) + Σ_{x∈B'} (w̃_φ(x) − sg[w̃_φ(x)]) ℓ(x; θ),   w̃ = softmax over B' of the logits,

where sg is ``stop_gradient``. Its value and θ-gradient are the plain loss on the kept batch (what θ trains on);
its mixed derivative ∂²f/∂φ∂θ = Σ_{B'} ∇w̃ ∇ℓᵀ is the soft-weighted generic loss's (what φ learns through). So
``dds`` (one soft SGD step looked through), ``anograd``, ``soba`` (methods/) and ``cg``, ``neumann``, ``darts``,
``unroll`` all run as they are. The price: the inner step evaluates the B' term too (its θ-gradient is zero but it
is computed), ≈ one more forward/backward of ``b_small`` sequences per step.

Programs (``task.program``): ``select`` (the bilevel one above); baselines, run with ``method=none`` (the weight
model is not trained): ``generic`` (θ on uniform generic batches), ``mixing`` (each step: a generic and a specific
batch, loss (1 − mix)·generic + mix·specific), ``classifier`` (a specific-vs-generic ridge classifier on hashed byte
uni/bigram features, fitted in numpy at construction; θ trains on the top ``filter_fraction`` of the pool by its
score) and ``cds`` (contrastive data selection, Moore–Lewis: score = mean log-likelihood under a specific byte-bigram
LM minus under a generic one, both smoothed count models fitted in numpy; the top ``filter_fraction`` kept). Every
program is fine-tuned after training (:meth:`evaluate`: ``finetune_steps`` Adam steps on the specific set).

Data (``task.data``): ``stdlib`` (embedded, :mod:`mlo_bench.tasks.data.text`: the standard library's source files,
the domain of a file being its package; files split by the seed: per domain ``test_fraction`` held out (the specific
domain's form ``spec_test``, the others' ``gen_test``), of the specific domain's other files ``specific_fraction``
form the specific set and the rest stay in the generic pool as a minority; at most ``max_domain_bytes`` per domain,
``specific_bytes`` for the specific domain ``task.domain``, default ``encodings``),
or ``files`` (``task.generic=`` / ``task.specific=``: JSONL or plain text, split by document; no ground truth, so no
precision). Sequences: non-overlapping windows of ``seq_len + 1`` bytes.

Metrics: ``specific_loss`` (the quality: held-out specific loss per byte, nats), ``generic_loss``,
``selection_precision`` (the share of the specific domain among kept examples: for ``select``, over
``precision_batches`` fixed candidate batches scored by the current w_φ and kept by the runner's own rule; for the
filters, in their filtered pool; uniform otherwise) against ``base_rate`` (its share of the pool), ``precision_lift``
(their ratio), after fine-tuning ``specific_loss_finetuned`` / ``generic_loss_finetuned``, ``steps_per_s``.

Measured (``full`` preset, torch float32, seeds 0–2, 2-core CPU shared at load 11–17: every time figure is loaded;
``+experiment=ds_table``): specific loss per byte, mean ± std — generic only 2.289 ± 0.04, mixing 1.342 ± 0.21,
SOBA 1.675 ± 0.29, DDS 1.638 ± 0.13, anograd 1.645 ± 0.12, CDS 1.701 ± 0.21, classifier 1.742 ± 0.16; after 100
fine-tuning steps 1.595 / 1.263 / 1.363 / 1.374 / 1.381 / 1.399 / 1.403; selection precision against a base rate of
0.055: DDS 0.331, anograd 0.331 (6.1×, paired intervals [5.0, 7.3] and [5.2, 7.1]), SOBA 0.232 (0.271, 0.059 and
0.367 by seed: seed 1 never found the domain), CDS 0.215, classifier 0.209; steps/s 38 / 16 / 2.6 / 4.4 / 4.7 / 26 /
26. Paired verdicts: DDS and anograd beat generic only (0.715×, 0.718×; SOBA 0.725× [0.50, 1.06], inconclusive);
mixing is the strongest before fine-tuning (supported against every row); after fine-tuning the bilevel rows beat
generic only (0.85–0.87×) but not mixing (1.09–1.10×, inconclusive: ≈ 6 seeds) — unlike the paper, where they lead.
Run again later (same command, load ≈ 5, 8.7 min wall for the 21 runs, 271 s CPU): every loss, precision and
verdict identical to the digit, the steps/s five times higher (generic only 208, mixing 101, SOBA 18, DDS 33,
anograd 22, CDS 143, classifier 166) — steps/s under load says little, so its claims are left out of verdicts then.
Scoring is cheap next to the update (``+experiment=ds_scaling``, b_small = 8): the select phase takes 0.6 / 1.1 /
2.4 / 54 ms at b_large/b_small = 1 / 4 / 16 / 64 against 180–220 ms of inner + hypergradient phases for DDS (SOBA:
360–455 ms) — below 2% of a step up to 16×, a quarter at 64× (where the scoring batch leaves the cache). Again at
load ≈ 4 (the report's scaling section now plots ``time_select_s`` and ``time_step_s``): select 0.8 / 0.8 / 1.7 / 5.4 ms
against whole DDS steps of 43 / 36 / 38 / 21 ms (SOBA: 0.6 / 0.8 / 1.5 / 11.7 against 42 / 61 / 54 / 70 ms).
The specific domain is ``encodings`` (codec tables: a genre of its own among the packages); with ``email`` (code like
every other package) nothing finds it from 32-byte windows: over 800 demo steps DDS / anograd / SOBA (ρ = 0.1) keep
0.018 / 0.018 / 0.008 of the domain against a base rate of 0.020, and even the classifier / CDS filters only double it
(0.038 / 0.046) — the paper's "helps in some settings, not in others". Not testable at our scale: absolute losses
(another corpus, a 12-layer transformer, 300k steps), and the throughput ordering, which load noise leaves
inconclusive except mixing > DDS. The demo (``+experiment=ds_demo backend=jax``, 11 runs, load 5–7): 13–47 s
wall per run with a cold compilation cache (``MLO_BENCH_JAX_CACHE=off``; compile 1.7–12.5 s per run, 163 s CPU in
all), 131 s for all 11 with the cache warm; torch and naive runs take seconds. ``mlo-bench verify`` (default
config): dds, soba, cg agree between torch and jax to ≤ 4e-14 after one float64 step; after 10 float32 steps dds
3.0e-7, soba 5.6e-7, anograd 1.4e-7.
The LM's Hessian is indefinite (one inner step per outer step: θ is never near a minimum), and classic CG breaks down
on it: in the 10th solve of a float32 run a direction met pᵀHp = 5e-5 against ‖r‖² = 4 and the residual grew to 1e7,
so round-off decided the step and torch and jax ended 10 steps 1.0e-3 apart (after 5e-6 on the first hypergradient).
The ``select-cg`` variant therefore stops at the first non-positive curvature (``method.negative_curvature=stop``,
Steihaug's rule): ``mlo-bench verify task=data_selection method=cg method.negative_curvature=stop dtype=float32
--steps 10`` → 1.4e-7 (20 steps: 1.6e-7; float64, one step: 2.6e-15). On the demo (torch, seed 0, load ≈ 4) its
solves kept 3.6 of 10 iterations on average (13 of 63 stopped at the first direction: no hypergradient that step), and
it found the domain where classic CG did not: selection precision 0.193 vs 0.076 (base rate 0.072), specific loss
3.24 vs 3.45.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlo_bench.suite.contract import (
    ExactBudget,
    Level,
    Selection,
    Task,
)
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.engine.step_phases import keep_by_score
from mlo_bench.suite.models import nn
from mlo_bench.suite.models.batch import batch_max, batch_mean
from mlo_bench.suite.models.byte_models import byte_cnn, byte_lm, lm_losses
from mlo_bench.suite.models.reweight import EpochBatches
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import text
from mlo_bench.tasks.data.selection_filters import bigram_cds_scores, classifier_scores
from mlo_bench.tasks.data.selection_paper import PAPER

PROGRAMS = ("select", "generic", "mixing", "classifier", "cds")


# ---- the paper (Grangier et al. 2024's reference runs): tasks/data/selection_paper.py --------------------------


@dataclass
class DSConfig:
    program: str = "select"
    data: str = "stdlib"
    generic: str | None = None
    specific: str | None = None
    domain: str = "encodings"
    seq_len: int = 16
    max_domain_bytes: int = 8_000
    specific_bytes: int = 0
    test_fraction: float = 0.2
    specific_fraction: float = 0.5
    b_small: int = 4
    b_large: int = 16
    mix: float = 0.5
    filter_fraction: float = 0.25
    d: int = 16
    layers: int = 1
    kernel: int = 3
    wm_emb: int = 8
    wm_channels: int = 8
    wm_kernel: int = 3
    eval_sequences: int = 64
    precision_batches: int = 8
    finetune_steps: int = 0
    exact_max_params: int = 2000
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=2e-3, eps_root=1e-16))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))
    finetune: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))

    def validate(self) -> None:
        if self.program not in PROGRAMS:
            raise ValueError(f"task.program must be one of {', '.join(PROGRAMS)} (got {self.program!r})")
        if self.data not in ("stdlib", "files"):
            raise ValueError(f"task.data must be stdlib or files (got {self.data!r})")
        if self.data == "files" and not (self.generic and self.specific):
            raise ValueError("task.generic and task.specific must name corpus files for task.data=files")
        for key in ("seq_len", "b_small", "d", "layers", "kernel", "wm_emb", "wm_channels", "wm_kernel",
                    "eval_sequences", "precision_batches", "max_domain_bytes"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        if self.b_large < self.b_small:
            raise ValueError(f"task.b_large must be >= task.b_small (got {self.b_large} < {self.b_small})")
        if self.wm_kernel > self.seq_len:
            raise ValueError(f"task.wm_kernel must be <= task.seq_len (got {self.wm_kernel})")
        for key in ("test_fraction", "specific_fraction", "filter_fraction"):
            if not 0 < getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be in (0, 1) (got {getattr(self, key)})")
        if not 0 <= self.mix <= 1:
            raise ValueError(f"task.mix must be in [0, 1] (got {self.mix})")
        if min(self.finetune_steps, self.exact_max_params, self.specific_bytes) < 0:
            raise ValueError("task.finetune_steps, task.exact_max_params and task.specific_bytes must be >= 0")
        for key in ("lower", "upper", "finetune"):
            getattr(self, key).validate(f"task.{key}")
        # the data's pre-check: the files' content, or the domain among this Python's packages (cached: read once)
        if self.data == "files":
            for key in ("generic", "specific"):
                text.corpus_documents(getattr(self, key), f"task.{key}", self.seq_len + 1)
        else:
            text.check_domain(self.domain, text.stdlib_corpus())


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into (the fraction, the rest), each side non-empty when n >= 2."""
    perm = rng.permutation(n)
    k = min(max(1, int(round(fraction * n))), n - 1)
    return np.sort(perm[:k]), np.sort(perm[k:])


@register("task")
class DataSelection(ExactBudget, Task):
    """Online bilevel data selection (Grangier et al. 2024): a weight model filters a generic pool for an LM."""

    name = "data_selection"
    Config = DSConfig
    paper = PAPER
    presets = {
        "demo": {"task": {"seq_len": 32, "d": 32, "layers": 2, "b_small": 8, "b_large": 32, "wm_emb": 16,
                          "wm_channels": 16, "wm_kernel": 5, "max_domain_bytes": 30_000, "specific_bytes": 90_000,
                          "eval_sequences": 128,
                          "precision_batches": 64, "finetune_steps": 20, "upper": {"lr": 0.01}}, "steps": 60},
        "full": {"task": {"seq_len": 64, "d": 32, "layers": 3, "b_small": 8, "b_large": 64, "wm_emb": 16,
                          "wm_channels": 16, "wm_kernel": 5, "max_domain_bytes": 60_000, "specific_bytes": 160_000,
                          "eval_sequences": 256,
                          "precision_batches": 128, "finetune_steps": 100, "upper": {"lr": 0.01}}, "steps": 500},
    }

    def __init__(self, cfg: DSConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        length = cfg.seq_len + 1
        if cfg.data == "files":
            self._load_files(cfg, seed, length)
        else:
            self._load_stdlib(cfg, seed, length)
        n_gen = len(self.gen)
        if n_gen < cfg.b_large:
            raise ValueError(f"task.b_large={cfg.b_large} exceeds the generic pool's {n_gen} sequences")
        self.lm = byte_lm(cfg.d, cfg.layers, cfg.kernel)
        self.wm = byte_cnn(cfg.wm_emb, cfg.wm_channels, cfg.wm_kernel)
        self.stream = EpochBatches(seed, {"gen": 1, "spec": 2, "mix": 3, "ft": 4})
        self.pool = np.arange(n_gen)
        if cfg.program in ("classifier", "cds"):
            fn = classifier_scores if cfg.program == "classifier" else bigram_cds_scores
            scores = fn(self.gen, self.spec, seed)
            keep = max(cfg.b_small, int(round(cfg.filter_fraction * n_gen)))
            self.pool = np.sort(np.argsort(-scores, kind="stable")[:keep])
        self._compiled: dict[tuple[int, str], Any] = {}

    # ---- data ---------------------------------------------------------------------------------------------------
    def _load_stdlib(self, cfg: DSConfig, seed: int, length: int) -> None:
        corpus = text.stdlib_corpus()
        text.check_domain(cfg.domain, corpus)
        gen, gen_test, is_spec, used = [], [], [], {}
        spec = spec_test = None
        for domain in sorted(corpus):
            rng = np.random.default_rng([seed, zlib.crc32(domain.encode()), 0xD5])
            cap = cfg.specific_bytes if domain == cfg.domain and cfg.specific_bytes else cfg.max_domain_bytes
            files, names, budget = [], [], cap
            for i in rng.permutation(len(corpus[domain])):  # at most a quarter of the budget from one file
                if budget <= 0:
                    break
                names.append(corpus[domain][i][0])
                files.append(corpus[domain][i][1][: min(budget, cfg.max_domain_bytes // text.MIN_FILES)])
                budget -= len(files[-1])
            used[domain] = (len(files), sum(map(len, files)))
            if len(files) < 2 or (domain == cfg.domain and len(files) < 3):
                raise ValueError(f"task.max_domain_bytes={cfg.max_domain_bytes} leaves domain {domain} too few "
                                 f"files to split ({len(files)})")
            test, rest = _split(len(files), cfg.test_fraction, rng)
            seqs = lambda ix, files=files: text.sequences([files[i] for i in ix], length)  # noqa: E731
            if domain == cfg.domain:
                own, shared = _split(len(rest), cfg.specific_fraction, rng)
                spec, spec_test = seqs(rest[own]), seqs(test)
                self.split_files = {"spec": [names[i] for i in rest[own]], "spec_test": [names[i] for i in test],
                                    "gen": [names[i] for i in rest[shared]]}
                gen.append(seqs(rest[shared]))
            else:
                gen.append(seqs(rest))
                gen_test.append(seqs(test))
            is_spec.append(np.full(len(gen[-1]), domain == cfg.domain))
        self.gen, self.gen_test = np.concatenate(gen), np.concatenate(gen_test)
        self.spec, self.spec_test = spec, spec_test
        self.is_spec: np.ndarray | None = np.concatenate(is_spec)
        prov = text.provenance(corpus)
        self.provenance = (f"CPython {prov['python']} stdlib ({prov['root']}): {len(corpus)} domains, "
                           f"{prov['files']} files, {sum(prov['bytes'].values())} bytes; used "
                           + ", ".join(f"{d} {n}f/{b}B" for d, (n, b) in sorted(used.items())))
        for name in ("spec", "spec_test", "gen_test"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"task.seq_len={cfg.seq_len}: the {name} split holds no sequence (raise "
                                 "task.max_domain_bytes or lower task.seq_len)")

    def _load_files(self, cfg: DSConfig, seed: int, length: int) -> None:
        splits = {}
        for key, path, tag in (("task.generic", cfg.generic, 1), ("task.specific", cfg.specific, 2)):
            docs = text.corpus_documents(path, key, length)
            test, train = _split(len(docs), cfg.test_fraction, np.random.default_rng([seed, 0xF1, tag]))
            splits[key] = (text.sequences([docs[i] for i in train], length),
                           text.sequences([docs[i] for i in test], length))
        (self.gen, self.gen_test), (self.spec, self.spec_test) = splits["task.generic"], splits["task.specific"]
        self.is_spec = None
        self.provenance = f"files: generic {cfg.generic}, specific {cfg.specific}"

    def data(self) -> dict[str, np.ndarray]:
        return {"gen": self.gen, "spec": self.spec}

    def batch(self, level: str, step: int) -> dict[str, np.ndarray]:
        cfg = self.cfg
        if level == "weights":
            return {"sidx": self.stream.batch("spec", len(self.spec), cfg.b_small, step)}
        if cfg.program == "select":
            return {"idx": self.stream.batch("gen", len(self.gen), cfg.b_large, step)}
        out = {"idx": self.pool[self.stream.batch("gen", len(self.pool), cfg.b_small, step)]}
        if cfg.program == "mixing":
            out["midx"] = self.stream.batch("mix", len(self.spec), cfg.b_small, step)
        return out

    # ---- the program --------------------------------------------------------------------------------------------
    def levels(self) -> list[Level]:
        select = Selection(self._score, self.cfg.b_small) if self.cfg.program == "select" else None
        return [Level("weights", self._specific_loss, self.cfg.upper, data="specific"),
                Level("lm", self._lm_loss, self.cfg.lower, parent="weights", data="generic", select=select)]

    def _weights(self, ops: Any, phi: Any, seqs: Any) -> Any:
        logits = self.wm.apply(ops, phi, seqs)
        return ops.exp(logits - batch_max(ops, logits))

    def _score(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        return self._weights(ops, params["weights"], batch["gen"][batch["idx"]])

    def _specific_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        return batch_mean(ops, lm_losses(ops, self.lm, params["lm"], batch["spec"][batch["sidx"]]))

    def _lm_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        cfg, theta, gen = self.cfg, params["lm"], batch["gen"]
        plain = batch_mean(ops, lm_losses(ops, self.lm, theta, gen[batch["idx"]]))
        if cfg.program == "mixing":
            specific = batch_mean(ops, lm_losses(ops, self.lm, theta, batch["spec"][batch["midx"]]))
            return (1.0 - cfg.mix) * plain + cfg.mix * specific
        if cfg.program != "select":
            return plain
        sub = gen[batch["idx_candidates"][: cfg.b_small]]
        w = ops.exp(ops.log_softmax(self.wm.apply(ops, params["weights"], sub)))
        return plain + ops.sum((w - ops.stop_gradient(w)) * lm_losses(ops, self.lm, theta, sub))

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        lm = self.lm.init(rng)
        return {"weights": self.wm.init(rng), "lm": lm}

    def n_lower_params(self) -> int:
        return nn.n_params(self.lm.init(np.random.default_rng(0)))

    def supports_on(self, backend: Any, method: str) -> str | None:
        """A backend that materialises the best-response Jacobian row by row (naive's default chain) takes one
        backward pass per LM parameter per hypergradient: above ``exact_max_params`` it is unsupported, as ``exact``
        is (the byte embedding alone is 256·d parameters; ``backend.chain=reverse`` runs every method)."""
        n, limit = self.n_lower_params(), self.cfg.exact_max_params
        if backend.materialises and n > limit:
            return (f"backend {backend.name} materialises the {n}-row best-response Jacobian (one backward pass per "
                    f"lower parameter; limit task.exact_max_params={limit}); backend.chain=reverse runs every method")
        return None

    # ---- metrics ------------------------------------------------------------------------------------------------
    def _fn(self, backend: Any, name: str, fn: Any, args: tuple) -> Any:
        key = (id(backend), name)
        if key not in self._compiled:
            self._compiled[key] = backend.compile(fn, args)[0]
        return self._compiled[key]

    def _mean_loss(self, backend: Any, theta: Any, seqs: np.ndarray) -> float:
        ops, n = backend.ops, min(self.cfg.eval_sequences, len(seqs))
        chunk = min(64, n)
        rows = np.random.default_rng([self.seed, 0xE7A1, len(seqs)]).permutation(len(seqs))[: n - n % chunk]
        fn = self._fn(backend, f"loss{chunk}", lambda th, x: ops.sum(lm_losses(ops, self.lm, th, x)),
                      (theta, backend.asarray(seqs[rows[:chunk]])))
        total = sum(float(backend.to_numpy(fn(theta, backend.asarray(seqs[rows[i:i + chunk]]))))
                    for i in range(0, len(rows), chunk))
        return total / len(rows)

    def _precision(self, backend: Any, params: dict[str, Any]) -> float:
        cfg = self.cfg
        if cfg.program != "select":
            return float(self.is_spec[self.pool].mean())
        ops, kept = backend.ops, []
        phi = params["weights"]
        fn = None
        for i in range(cfg.precision_batches):
            rng = np.random.default_rng([self.seed, 0x9EC, i])
            cand = rng.choice(len(self.gen), cfg.b_large, replace=False)
            x = backend.asarray(self.gen[cand])
            fn = fn or self._fn(backend, "score", lambda p, x: self._weights(ops, p, x), (phi, x))
            chosen = keep_by_score(backend.to_numpy(fn(phi, x)), cfg.b_small, rng)
            kept.append(self.is_spec[cand[chosen]])
        return float(np.mean(np.concatenate(kept)))

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"specific_loss": self._mean_loss(backend, params["lm"], self.spec_test),
                               "generic_loss": self._mean_loss(backend, params["lm"], self.gen_test),
                               "n_generic": len(self.gen), "n_specific": len(self.spec),
                               "corpus": self.provenance}
        if self.is_spec is not None:
            base = float(self.is_spec.mean())
            precision = self._precision(backend, params)
            out.update(selection_precision=precision, base_rate=base, precision_lift=precision / base)
        return out

    def evaluate(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Fine-tuning on the specific set: ``finetune_steps`` steps of ``task.finetune`` from the trained θ."""
        cfg = self.cfg
        if not cfg.finetune_steps:
            return {}
        ops, theta = backend.ops, params["lm"]
        state = optim.init(ops, cfg.finetune, theta)

        def step(th, st, x):
            g = backend.grad(lambda t: ops.mean(lm_losses(ops, self.lm, t, x)))(th)
            return optim.update(ops, cfg.finetune, g, st, th)

        def batch(s):
            return backend.asarray(self.spec[self.stream.batch("ft", len(self.spec), cfg.b_small, s)])

        fn = backend.compile(step, (theta, state, batch(0)))[0]
        for s in range(cfg.finetune_steps):
            theta, state = fn(theta, state, batch(s))
        return {"specific_loss_finetuned": self._mean_loss(backend, theta, self.spec_test),
                "generic_loss_finetuned": self._mean_loss(backend, theta, self.gen_test)}
