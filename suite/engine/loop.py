"""The measured work of one run: the training loop, its phases and checks.

Per outer step t: ``select`` (a selecting level's candidates scored by the levels above and cut down; only when a level
selects), then the step itself, :func:`mlo_bench.suite.engine.outer_step.outer_step` (its phases ``inner``,
``hypergrad`` and ``outer`` in the run's ordering, ``inner_first`` or ``lookahead``; what a method that unrolls or
computes no hypergradient does there is said there). ``inner_step_evals`` — lower-level optimizer steps evaluated per
outer step — is Σ steps, 2·Σ steps for a method that unrolls in ``lookahead``, 0 for one that ``steps_lower``.

Each phase is timed on its own, synchronised before the clock is read; figures are medians over outer steps after the
first (warm-up) one; compile time is measured apart (``compile_s``). ``eval_every=N`` computes the task's metrics every
N steps (curves in ``trace.csv``), outside the training clock (``time_total_s``). After the loop: the task's metrics,
its post-training phase (``time_eval_s``), and the hypergradient check (:func:`hypergrad_check`). A stop asked by a
signal (:mod:`mlo_bench.suite.run.interrupt`) is honoured at the next outer step's boundary, and once more after the
last step, before the evaluation: :class:`~mlo_bench.suite.run.interrupt.Interrupted`, the metrics so far kept (the
outer loss at the boundary, ``steps_done``, the phases' medians).

A run is set up once, by :func:`start` (task, levels, initial state, every function compiled, the step fused or phase
by phase; a peak that cannot fit refused), shared by :func:`train` and :mod:`mlo_bench.suite.measure.stepbench`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlo_bench.suite.engine import optim, precision
from mlo_bench.suite.engine.compare import hypergrad_errors
from mlo_bench.suite.engine.compiled_step import Fused, eligible, wanted
from mlo_bench.suite.engine.hypergradient import hypergradient_fn, init_method_state, stateful_hypergradient_fn
from mlo_bench.suite.engine.levels import chain, lower_step_refusal, steps_per_level
from mlo_bench.suite.engine.outer_step import Phases, Shape, outer_step
from mlo_bench.suite.engine.step_phases import Batches, Diverged, inner_phase, round_fn, unrolled_fns
from mlo_bench.suite.engine.trees import tree_leaves, tree_vdot
from mlo_bench.suite.measure import floor, headroom
from mlo_bench.suite.measure.instruments import PhaseTimer, Stages
from mlo_bench.suite.run import interrupt
from mlo_bench.suite.run.plan import Plan, take_task
from mlo_bench.suite.run.progress import RunProgress

#: a finite outer loss larger than this many times (its initial magnitude + 1) ends the run as ``diverged``
GROWTH_LIMIT = 1e6
#: sustained growth: an outer loss logged above SUSTAINED_FACTOR × (its initial magnitude + 1) at SUSTAINED_LOGS
#: consecutive logs (``log_every``) ends the run as ``diverged`` too, at the last of them: a step too large grows
#: the loss geometrically but may not reach 10⁶× in the run; a converging run stays below (the quadratic's peak ≤
#: 6.6× at L = 2…5, d = 16…200; cross-entropy from ≈ 2.3 and a byte LM from ≈ 5.5 far from 10×: demos end ``ok``)
SUSTAINED_FACTOR = 10.0
SUSTAINED_LOGS = 3


class Unsupported(Exception):
    """The combination cannot run; the message is the reason."""


def _finite(backend: Any, x: Any) -> bool:
    return bool(np.isfinite(backend.to_numpy(x)).all())


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)}


class Run:
    """One run's state while it trains: the task, its levels and every compiled function."""

    def __init__(self, plan: Plan, backend: Any, stages: Stages | None = None) -> None:
        self.plan, self.backend, ops = plan, backend, backend.ops
        self.stages = stages if stages is not None else Stages()  #: wall seconds per stage (the profile's)
        self.task = task = take_task(plan)
        self.levels = chain(task.levels())
        self.steps = steps_per_level(self.levels, plan.inner_steps, plan.level_steps)
        #: the levels as the inner phase trains them and as the hypergradient differentiates them (precision.py;
        #: ``self.levels``: full precision, for the monitoring loss and the references)
        self.precision = plan.precision or precision.FP32
        reason = (task.supports(plan.method.name) or task.supports_on(backend, plan.method.name)
                  or precision.refusal(backend, self.precision, plan.method.name)
                  or lower_step_refusal(plan.method, self.levels, self.steps, plan))
        if reason:
            raise Unsupported(reason)
        self.train_levels = precision.in_precision(backend, self.levels, self.precision.name)
        self.hyper_levels = precision.in_precision(backend, self.levels, self.precision.hyper_name)
        #: whether the hypergradient is loss-scaled: a non-finite one is then a skipped outer step, not a divergence
        self.scales_hypergrad = self.precision.scales(self.precision.hyper_name)
        self.top, self.lower = self.levels[0].name, self.train_levels[1:]
        method = plan.method
        self.trains_upper = method.computes_hypergradient
        self.unrolls = self.trains_upper and method.unrolls
        self.lookahead = plan.ordering == "lookahead"
        self.init = task.init_params(np.random.default_rng(plan.seed))
        self.data = backend.tree_asarray(task.data())
        self.steps_lower = self.trains_upper and method.steps_lower  # no inner phase: Method.steps_lower
        keys = frozenset(self.data if isinstance(self.data, dict) else ())
        self.shape = Shape(self.top, self.trains_upper, self.unrolls, self.lookahead, self.steps_lower, keys)
        self.batches = Batches(task, backend, self.data, self.levels, self.steps)
        self.check_fn = hypergradient_fn(backend, method, plan.method_cfg, self.hyper_levels, self.steps)
        self.hyper_fn = stateful_hypergradient_fn(backend, method, plan.method_cfg, self.hyper_levels, self.steps)
        self.forward, self.backward = unrolled_fns(backend, self.train_levels, self.hyper_levels[0])
        self.phase = inner_phase(backend, self.lower)
        top_level = self.levels[0]
        self.outer_fn = lambda p, s, hg: precision.update(ops, top_level.optimizer, hg, s, p)
        self.loss_fn = lambda params, batch: top_level.loss(ops, params, batch)
        #: the step's phases uncompiled (traced whole by the fused step; called plain for peak_live_bytes) …
        self.plain = Phases(self.phase, self.outer_fn, self.hyper_fn, self.forward, self.backward)
        self.compiled: Phases | None = None  #: … and compiled one by one (:meth:`compile`), as the loop times them
        evals = 0 if self.steps_lower else sum(self.steps.values())
        self.inner_step_evals = evals * (2 if self.unrolls and self.lookahead else 1)

    def steps_taken(self, outer_steps: int) -> dict[str, int]:
        """Each level's optimizer steps over ``outer_steps`` outer steps (the top's: one each, when trained)."""
        taken = {name: n * outer_steps for name, n in self.steps.items()}
        if self.trains_upper:
            taken[self.top] = outer_steps
        return taken

    def hyper_batches(self, rounds: list, top_batch: Any) -> dict[str, Any]:
        return self.shape.hyper_batches(rounds, top_batch)

    def compile(self, params, states, mstate, metrics: dict[str, Any]) -> None:
        """Compile every function of the loop on outer step 0's arguments (compile time apart), and count, untimed,
        the FLOPs of one hypergradient (the peak bytes: :meth:`count_bytes`)."""
        b = self.backend
        compile_s, metrics["flops_select"] = self.batches.compile(params)
        rounds0, _ = self.batches.rounds(0, params)
        top0 = self.batches.top(0)
        self.rounds_c = {}
        for rnd in [] if self.steps_lower else rounds0:
            active = frozenset(rnd)
            if active not in self.rounds_c:
                self.rounds_c[active], s = b.compile(round_fn(b, self.lower, active), (params, states, rnd))
                compile_s += s
        hb0 = self.hyper_batches(rounds0, top0)
        hg0 = forward_c = backward_c = hyper_c = outer_c = None
        if self.unrolls:
            forward_c, s = b.compile(self.forward, (params, states, rounds0))
            compile_s += s
            p1, s1, pull = forward_c(params, states, rounds0)
            backward_c, s = b.compile(self.backward, (pull, p1, s1, top0))
            compile_s += s
            hg0 = backward_c(pull, p1, s1, top0)
            del pull

            def hyper_counted(params, states, rounds, top_batch):
                p1, s1, pull = self.forward(params, states, rounds)
                return self.backward(pull, p1, s1, top_batch)

            with self.stages("count_flops"):
                metrics["flops_hypergrad"] = b.count_flops(hyper_counted, (params, states, rounds0, top0))
        elif self.trains_upper:
            hyper_c, s = b.compile(self.hyper_fn, (params, states, hb0, mstate))
            compile_s += s
            hg0 = hyper_c(params, states, hb0, mstate)[0]
            with self.stages("count_flops"):
                metrics["flops_hypergrad"] = b.count_flops(self.hyper_fn, (params, states, hb0, mstate))
        if hg0 is not None:
            outer_c, s = b.compile(self.outer_fn, (params[self.top], states[self.top], hg0))
            compile_s += s
        self.compiled = Phases(self.inner, outer_c, hyper_c, forward_c, backward_c)
        self.loss_c, s = b.compile(self.loss_fn, (params, top0))
        metrics["compile_s"] = compile_s + s

    def count_bytes(self, params, states, mstate, fused: Fused | None) -> int | None:
        """``peak_live_bytes``: peak bytes alive during one outer step, untimed — read off the fused step the loop
        runs where the backend can (``Backend.compiled_live_bytes``: jax's memory analysis of that program, which
        then counts every level's new parameters and optimizer states among its outputs), else counted on the
        uncompiled step (:meth:`one_step`; on jax one more compile, 45 s of the main job's 553 s cold)."""
        with self.stages("count_bytes"):
            live = self.backend.compiled_live_bytes(fused.fn) if fused is not None else None
            if live is None:
                rounds0, _ = self.batches.rounds(0, params)
                live = self.backend.live_peak_bytes(self.one_step, (params, states, rounds0, self.batches.top(0),
                                                                    mstate))
            return live

    def one_step(self, params, states, rounds, top_batch, mstate):
        """One outer step, uncompiled (what ``peak_live_bytes`` is counted on); returns the top level's new parameters
        and optimizer state; for a method that trains no upper level, every level's (a compiler would otherwise drop
        the lower levels' training as dead code: XLA counted 1,236 bytes for a 110M-parameter baseline step)."""
        params, states, *_ = outer_step(self.shape, self.plain, params, states, mstate, rounds, top_batch)
        return (params[self.top], states[self.top]) if self.trains_upper else (params, states)

    def step(self, t: int, params, states, mstate, timer: PhaseTimer, capture: dict[str, Any] | None = None):
        """Outer step ``t`` as the loop times it, each phase through ``timer``; returns ``(params, states,
        mstate, rounds, top_batch, hyper_batches)`` (``hyper_batches`` is ``None`` unless a hypergradient was taken
        from them). Raises :class:`Diverged` on a non-finite hypergradient."""
        backend = self.backend
        rounds, select_s = self.batches.rounds(t, params)
        if self.batches.selects:
            timer.samples.setdefault("select", []).append(select_s)
        top_batch = self.batches.top(t)

        def seen(hg):
            if not self.scales_hypergrad and not _finite(backend, tree_vdot(backend.ops, hg, hg)):
                raise Diverged(t + 1, "non-finite hypergradient")
            if capture is not None and t == 0:
                capture["first_hypergrad"] = backend.tree_to_numpy(hg)

        params, states, mstate, _, hb = outer_step(self.shape, self.compiled, params, states, mstate, rounds,
                                                   top_batch, timer.time, seen)
        return params, states, mstate, rounds, top_batch, hb

    def inner(self, params, states, rounds):
        for rnd in rounds:
            params, states = self.rounds_c[frozenset(rnd)](params, states, rnd)
        return params, states


def start(plan: Plan, backend: Any, metrics: dict[str, Any], stages: Stages | None = None
          ) -> tuple[Run, Fused | None, tuple]:
    """A run ready to take its first step, on a backend set up: ``(run, fused, (params, states, mstate))`` — the run
    built, its state, everything compiled (``compile_s``, counted FLOPs and peak bytes, compile cache counts,
    ``inner_step_evals`` into ``metrics``; a peak that cannot fit raises ``headroom.PredictedOOM``) and the step:
    ``fused.step`` or ``run.step``. ``stages`` gets the seconds of build, compile and count_bytes."""
    stages = stages if stages is not None else Stages()
    with stages("build"):
        run = Run(plan, backend, stages)
        ops = backend.ops
        params = backend.tree_asarray(run.init)
        states = {lv.name: optim.init(ops, lv.optimizer, params[lv.name]) for lv in run.levels}
        states = precision.with_loss_scales(ops, run.precision, run.levels, states)
        mstate = (init_method_state(backend, plan.method, plan.method_cfg, run.levels, params)
                  if run.trains_upper else {})
    early = headroom.early_peak(run, backend, (params, states, mstate), metrics, plan.memory_guard)
    with stages("compile"):
        run.compile(params, states, mstate, metrics)
        fused = Fused(run) if wanted(plan, backend) and eligible(run) else None
        if fused is not None:
            metrics["compile_s"] += fused.compile(params, states, mstate)
    metrics["peak_live_bytes"] = early if early is not None else run.count_bytes(params, states, mstate, fused)
    metrics["resident_bytes"] = sum(int(getattr(x, "nbytes", 0)) for tree in (params, states, mstate)
                                    for x in tree_leaves(tree))
    metrics.update(backend.compile_cache_stats())
    metrics["inner_step_evals"] = run.inner_step_evals
    metrics["examples_per_step"] = run.batches.examples_per_step()
    headroom.check(backend, metrics["peak_live_bytes"], plan.memory_guard and early is None)  # else checked early
    return run, fused, (params, states, mstate)


def train(plan: Plan, backend: Any, metrics: dict[str, Any], trace: list[dict[str, Any]],
          capture: dict[str, Any] | None = None, stages: Stages | None = None) -> None:
    """The measured work. Fills ``metrics`` and ``trace`` (one dict per logged step) as it goes, so a failure keeps
    what was measured, and ``capture`` (when given) with ``first_hypergrad`` (the hypergradient of outer step 1, as
    training used it; ``None`` for ``method=none``), ``params`` and ``method_state`` after the last step, as numpy.
    ``stages`` (when given) gets each stage's wall seconds: :func:`start`'s, ``train`` (the loop), and after it
    ``sample_phases``, ``floor``, ``task_metrics``, ``evaluate`` and ``hypergrad_check``.

    Raises :class:`Diverged` on a non-finite hypergradient or logged outer loss, on a logged outer loss past
    ``GROWTH_LIMIT`` × (its initial magnitude + 1), and on sustained growth: one logged above ``SUSTAINED_FACTOR`` ×
    (its initial magnitude + 1) at ``SUSTAINED_LOGS`` consecutive logs."""
    stages = stages if stages is not None else Stages()
    run, fused, (params, states, mstate) = start(plan, backend, metrics, stages)
    step = fused.step if fused is not None else run.step
    loss0 = abs(float(backend.to_numpy(run.loss_c(params, run.batches.top(0)))))

    timer = PhaseTimer(backend.block)
    log_every = plan.log_every or max(1, plan.steps // 10)
    progress = RunProgress(f"{run.task.name}/{backend.name}/{plan.method.name}", plan.steps, plan.progress)
    rows: dict[int, dict[str, Any]] = {}
    eval_s = 0.0
    hb = last_top = None
    above = 0  # consecutive logs above SUSTAINED_FACTOR × (loss0 + 1)
    backend.block(params)
    backend.reset_peak_memory()
    start_s = time.perf_counter()
    try:
        for t in range(plan.steps):
            if why := interrupt.decided():  # a step boundary: stop here, keeping the loss reached (run/interrupt.py)
                if t and t not in rows:
                    rows[t] = {"outer_loss": float(backend.to_numpy(run.loss_c(params, last_top))),
                               "elapsed_s": time.perf_counter() - start_s - eval_s}
                    metrics["outer_loss"] = rows[t]["outer_loss"]
                raise interrupt.Interrupted(t, why)
            tick = time.perf_counter()
            params, states, mstate, rounds, top_batch, hb = step(t, params, states, mstate, timer, capture)
            timer.samples.setdefault("step", []).append(time.perf_counter() - tick)
            last_rounds, last_top = rounds, top_batch
            if (t + 1) % log_every == 0 or t + 1 == plan.steps:
                value = float(backend.to_numpy(run.loss_c(params, top_batch)))
                if not np.isfinite(value):
                    raise Diverged(t + 1, "non-finite outer loss")
                if abs(value) > GROWTH_LIMIT * (loss0 + 1.0):
                    raise Diverged(t + 1, f"outer loss grew to {value:.3g} (from {loss0:.3g})")
                rows.setdefault(t + 1, {})["outer_loss"] = value
                rows[t + 1]["elapsed_s"] = time.perf_counter() - start_s - eval_s
                progress.update(t + 1, value)
                metrics["outer_loss"] = value
                above = above + 1 if abs(value) > SUSTAINED_FACTOR * (loss0 + 1.0) else 0
                if above >= SUSTAINED_LOGS:
                    raise Diverged(t + 1, f"outer loss above {SUSTAINED_FACTOR:g}× (its initial {loss0:.3g} + 1) at "
                                          f"{SUSTAINED_LOGS} consecutive logs (now {value:.3g})")
            if plan.eval_every and (t + 1) % plan.eval_every == 0:
                tick = time.perf_counter()
                row = rows.setdefault(t + 1, {})
                row.setdefault("elapsed_s", tick - start_s - eval_s)
                row.update(_scalars(run.task.metrics(backend, params)))
                eval_s += time.perf_counter() - tick
    finally:
        backend.block(params)
        metrics["time_total_s"] = time.perf_counter() - start_s - eval_s
        if plan.eval_every:
            metrics["time_eval_during_s"] = eval_s
        metrics["peak_memory_bytes"] = backend.peak_memory_bytes()
        metrics["memory_kind"] = backend.memory_kind
        timer.summarise(metrics)
        trace.extend({"step": s, **row} for s, row in sorted(rows.items()))
        progress.close()
        stages.add("train", time.perf_counter() - start_s)

    metrics.update(precision.scale_metrics(backend, run.levels, states))
    skipped_all = precision.every_step_skipped(metrics, run.steps_taken(plan.steps))
    if skipped_all:
        raise Diverged(plan.steps, skipped_all)
    interrupt.check(plan.steps)  # every step done, the evaluation not yet
    if fused is not None:  # the phases' times from a separate sampled pass (engine/compiled_step.py), off the clock
        sampled = PhaseTimer(backend.block)
        with stages("sample_phases"):
            fused.sample_phases(params, states, mstate, sampled, plan.steps)
        metrics.update({f"time_{p}_s": sampled.median(p) for p in ("inner", "hypergrad", "outer")
                        if p in sampled.samples})
        metrics["phase_timing"] = "sampled"
    if capture is not None:
        capture.setdefault("first_hypergrad", None)
        capture["params"] = backend.tree_to_numpy(params)
        capture["method_state"] = backend.tree_to_numpy(mstate)
    hb = hb if hb is not None else run.hyper_batches(last_rounds, last_top)
    # one hypergradient's and one lower-level gradient's time, in interleaved pairs, outside the clock
    if plan.floor:
        with stages("floor"):
            metrics.update(floor.measure(run, params, states, mstate, last_rounds, last_top))
    with stages("task_metrics"):
        metrics.update(run.task.metrics(backend, params))
    with stages("evaluate"):
        _post_training(run, backend, params, metrics)
    if plan.hypergrad_check and run.trains_upper:
        with stages("hypergrad_check"):
            metrics.update(hypergrad_check(run, backend, params, states, hb))


def _post_training(run: Run, backend: Any, params: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The task's post-training phase (derive + retrain, fine-tune …), timed apart, when the task declares one."""
    from mlo_bench.suite.contract import Task

    if type(run.task).evaluate is Task.evaluate:
        return
    tick = time.perf_counter()
    values = run.task.evaluate(backend, params)
    backend.block(params)
    metrics["time_eval_s"] = time.perf_counter() - tick
    metrics.update(values or {})


def hypergrad_check(run: Run, backend: Any, params: dict[str, Any], states: dict[str, Any],
                    last: dict[str, Any]) -> dict[str, float]:
    """``hypergrad_rel_error`` / ``hypergrad_cosine`` (:func:`mlo_bench.suite.engine.compare.hypergrad_errors`),
    untimed, with the method's single-edge form (a stateful method cold): against the task's oracle at the initial
    top parameters with every lower level at its exact best response (isolating the method's error from the inner
    solver's), or, for a task without an oracle whose lower levels are small (``Task.exact_reference()``), against
    ``exact`` on the same backend at the final state (last parameters, optimizer states and batches). The method
    runs in the run's hypergradient precision (fp16: with the loss scales training reached), the references in full
    precision (the oracle in float64; ``exact`` in the run's dtype)."""
    from mlo_bench.suite.engine.hypergradient import oracle_state
    from mlo_bench.suite.plugins import registry

    task = run.task
    oracle = task.oracle()
    if oracle is not None:
        probe, probe_states, batches = oracle_state(backend, task, run.init[run.top])
        probe_states = precision.carry_scales(probe_states, states)  # fp16: the loss scales training reached
        h = precision.checked(backend, lambda st: _single_edge(run, backend, probe, st, batches), probe_states,
                              run.top, run.scales_hypergrad)
        return hypergrad_errors(h, oracle.hypergradient(run.init[run.top]))
    if not task.exact_reference():
        return {}
    cfg = registry.make_config("method", "exact", {})
    reference = hypergradient_fn(backend, registry.get("method", "exact")(), cfg, run.levels, run.steps)
    plain = precision.without_scales(states)  # the reference in full precision, unscaled
    ref = backend.tree_to_numpy(backend.compile(reference, (params, plain, last))[0](params, plain, last))
    h = precision.checked(backend, lambda st: _single_edge(run, backend, params, st, last), states, run.top,
                          run.scales_hypergrad)
    return hypergrad_errors(h, ref)


def _single_edge(run: Run, backend: Any, params, states, batches) -> Any:
    """The method's single-edge hypergradient, cold (``run.check_fn``) at this state. Where the method does not
    unroll, that is the function the loop compiled (``run.compiled.hyper``) called with a cold method state (the
    method's ``init`` at these parameters; ``{}`` for a stateless method), so it is called, not compiled again: on jax
    one compile fewer per run (0.3–1.5 s cold on the demos). Where these arguments do not fit that program (another
    structure), ``check_fn`` is compiled here."""
    from mlo_bench.suite.engine.hypergradient import init_method_state

    hyper = run.compiled.hyper if run.compiled is not None else None
    if hyper is not None:
        plan = run.plan
        cold = init_method_state(backend, plan.method, plan.method_cfg, run.levels, params)
        try:
            return hyper(params, states, batches, cold)[0]
        except (TypeError, ValueError):  # a program compiled for other shapes or structure
            pass
    return backend.compile(run.check_fn, (params, states, batches))[0](params, states, batches)
