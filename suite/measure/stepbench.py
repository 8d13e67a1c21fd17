"""Seconds per outer step of the training loop, several configs interleaved in one process.

Each config (a list of run overrides, as on the ``mlo-bench run`` command line) is composed, validated and set up as a
run is (its backend admitted and set up, a :class:`mlo_bench.suite.engine.loop.Run` built and compiled, compile time
apart: :func:`mlo_bench.suite.engine.loop.start`). Then, round after round, every config in turn runs a chunk of
``steps`` outer steps of the loop the runner times (``Run.step``: batches, phases, the finiteness check, the outer
update; ``Fused.step`` where a run fuses its step, i.e. on jax, whose phase columns are then empty) and the chunk's
wall time is divided by ``steps``. Interleaving is what makes the figures comparable on a shared machine: a burst of
load hits every config of a round alike, so the ratio of two configs within a round is steadier than either figure;
the table gives the median over rounds of seconds per step and of each config's ratio to the reference backend's
same-method figure in the same round.

    python -m mlo_bench.suite.measure.stepbench        # the Betty-sized MWN step, torch / jax / naive × 4 methods
    python -m mlo_bench.suite.measure.stepbench --backends torch,naive --methods cg --rounds 9 --steps 100
    python -m mlo_bench.suite.measure.stepbench --base task=quadratic task.d=1000 dtype=float32 --methods cg,neumann

The default base is the MWN step the size of Betty's toy example (long-tailed digits, MLP 64 → 100 → 10, weight net
1 → 100 → 1, batch 64, meta batch 100, one inner step). ``naive`` runs with ``backend.chain=reverse`` (plain autograd
with the graph kept, one VJP per level: the original Meta-Weight-Net code), so every method runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

BETTY_MWN = ("task=mwn", "+preset=demo", "task.hidden=100", "task.batch_size=64", "task.meta_batch_size=100",
             "inner_steps=1", "dtype=float32", "device=cpu")
BACKENDS = ("torch", "jax", "naive")
METHODS = ("darts", "unroll", "cg", "neumann")
#: per-backend overrides: naive differentiates the chain in reverse mode (plain autograd), so every method runs
BACKEND_EXTRA = {"naive": ("backend.chain=reverse",)}
REFERENCE = "naive"


@dataclass
class Stepper:
    """One config, set up and compiled, stepping on from where its last chunk stopped."""

    label: str
    backend_name: str
    method: str
    threads: int = 0  #: torch / BLAS threads set before each chunk (0: leave as they are)
    run: Any = None
    stepper: Any = None  #: ``Run.step`` or, where the run would fuse (suite/engine/compiled_step.py), ``Fused.step``
    backend: Any = None
    state: tuple = ()
    t: int = 0
    compile_s: float | None = None
    peak_live_bytes: int | None = None
    problem: str | None = None
    per_step: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)

    def chunk(self, steps: int) -> float:
        """``steps`` outer steps; seconds per step (wall, synchronised at the end)."""
        from mlo_bench.suite.measure.instruments import PhaseTimer

        params, states, mstate = self.state
        if self.threads:
            set_threads(self.threads)
        timer = PhaseTimer(self.backend.block)
        start = time.perf_counter()
        for _ in range(steps):
            params, states, mstate, *_ = self.stepper(self.t, params, states, mstate, timer)
            self.t += 1
        self.backend.block(params)
        seconds = (time.perf_counter() - start) / steps
        self.state = (params, states, mstate)
        self.per_step.append(seconds)
        for phase, xs in timer.samples.items():
            self.phases.setdefault(phase, []).extend(xs)
        return seconds


def set_threads(n: int) -> None:
    """torch intra-op and BLAS threads, switchable between chunks (XLA's are fixed when jax is imported)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def configs(base: list[str], backends: list[str], methods: list[str]) -> list[tuple[str, str, list[str]]]:
    """``(backend, method, overrides)`` per point of the grid."""
    return [(b, m, [*base, f"backend={b}", f"method={m}", *BACKEND_EXTRA.get(b, ())])
            for b in backends for m in methods]


def make_stepper(backend_name: str, method: str, overrides: list[str]) -> Stepper:
    """Compose, validate, set up and compile one config, as a run is (:func:`mlo_bench.suite.run.execute.set_up`,
    :func:`mlo_bench.suite.engine.loop.start`); a config that cannot run keeps its reason (``problem``)."""
    from mlo_bench.suite.engine.loop import start
    from mlo_bench.suite.run.compose import compose
    from mlo_bench.suite.run.execute import set_up
    from mlo_bench.suite.run.plan import prepare

    st = Stepper(f"{backend_name} × {method}", backend_name, method)
    try:
        plan = prepare(compose(overrides))
        backend = plan.backend_cls(plan.backend_cfg)
        set_up(plan, backend)
        metrics: dict[str, Any] = {}
        run, fused, state = start(plan, backend, metrics)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        st.problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]
        return st
    st.run, st.backend, st.state = run, backend, state
    st.stepper = fused.step if fused is not None else run.step
    st.compile_s, st.peak_live_bytes = metrics.get("compile_s"), metrics.get("peak_live_bytes")
    return st


def interleave(steppers: list[Stepper], steps: int, rounds: int, warmup: int = 1) -> None:
    """``rounds`` rounds of one chunk per stepper (order rotated each round), after ``warmup`` untimed rounds."""
    live = [s for s in steppers if s.problem is None]
    for r in range(warmup + rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for s in order:
            s.chunk(steps)
        if r < warmup:
            for s in order:
                s.per_step.clear()
                s.phases.clear()


def ratios(steppers: list[Stepper], reference: str = REFERENCE) -> dict[str, float]:
    """Per stepper: the median over rounds of its seconds per step / the reference backend's (same method, same
    round)."""
    ref = {(s.method, s.threads): s for s in steppers if s.backend_name == reference and s.problem is None}
    out = {}
    for s in steppers:
        r = ref.get((s.method, s.threads)) or ref.get((s.method, min((t for m, t in ref if m == s.method),
                                                                      default=0)))
        if s.problem is None and r is not None:
            out[s.label] = statistics.median(a / b for a, b in zip(s.per_step, r.per_step, strict=False))
    return out


def table(steppers: list[Stepper], reference: str = REFERENCE) -> str:
    """A markdown table: ms per outer step (median over rounds), ratio to the reference backend, phase medians."""
    rel = ratios(steppers, reference)
    lines = [f"| backend × method | ms / outer step | × {reference} | inner ms | hypergrad ms | outer ms "
             "| compile s | peak live KiB |", "|---|---|---|---|---|---|---|---|"]
    for s in steppers:
        if s.problem is not None:
            lines.append(f"| {s.label} | — ({s.problem}) | | | | | | |")
            continue
        ph = {k: f"{1e3 * statistics.median(v):.3f}" for k, v in s.phases.items()}
        live = "" if s.peak_live_bytes is None else f"{s.peak_live_bytes / 1024:.0f}"
        lines.append(f"| {s.label} | {1e3 * statistics.median(s.per_step):.3f} | {rel.get(s.label, float('nan')):.2f} "
                     f"| {ph.get('inner', '')} | {ph.get('hypergrad', '')} | {ph.get('outer', '')} "
                     f"| {s.compile_s or 0:.2f} | {live} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from mlo_bench.suite.measure import provenance
    from mlo_bench.suite.measure import threads as threads_mod
    from mlo_bench.suite.plugins import registry

    ap = argparse.ArgumentParser(prog="python -m mlo_bench.suite.measure.stepbench",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--base", nargs="*", default=list(BETTY_MWN), help="run overrides shared by every config")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=50, help="outer steps per chunk")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (one chunk per config each)")
    ap.add_argument("--threads", default="1",
                    help="intra-op / BLAS / XLA threads (suite/measure/threads.py); several (1,2) interleave "
                         "torch-based configs at each count (XLA keeps the first: its threads are fixed at import)")
    ap.add_argument("--reference", default=REFERENCE, help="the backend the ratios are taken to")
    args = ap.parse_args(argv)
    counts = [int(n) for n in args.threads.split(",")]
    applied = threads_mod.apply(counts[0])
    registry.discover()
    load0 = provenance.loadavg()
    grid = configs(args.base, args.backends.split(","), args.methods.split(","))
    steppers = []
    for b, m, o in grid:
        for n in counts if b != "jax" else counts[:1]:
            st = make_stepper(b, m, o)
            if len(counts) > 1:
                st.threads, st.label = n, f"{st.label} · {n} thr"
            steppers.append(st)
    interleave(steppers, args.steps, args.rounds)
    print(f"base: {' '.join(args.base)}; {args.steps} steps × {args.rounds} rounds, interleaved; threads {applied}; "
          f"load average {load0} → {provenance.loadavg()} on {provenance.os.cpu_count()} CPUs")
    print(table(steppers, args.reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
