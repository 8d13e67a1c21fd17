"""The peer engines in bf16 / fp16 (docs/precision.md, "Peers"): each peer × method either computes in the low
precision what its base backend (torch or jax) computes there — its losses under the suite's autocast or jmp policy —
and runs with the suite's fp16 loss scale, or is ``unsupported`` with the reason its library sidesteps them; the
library properties those reasons state are checked on the libraries here. Skips a peer whose library is not
installed (``pip install -e ".[peers]"``; betty, boat: see backends/betty.py, boat.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_backend, method_cfg
from test_peers import PEERS, _flat, _state, _task

from mlo_bench.backends.jax import JaxBackend
from mlo_bench.suite.engine import precision
from mlo_bench.suite.engine.hypergradient import hypergradient_fn, response
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare

RUN = ["task=quadratic", "task.d=16", "steps=3", "isolate=false", "progress=false", "dtype=float32", "device=cpu"]
CASES = [(peer, method) for peer, methods in PEERS.items() for method in methods]
#: the peer × method × precision the peers refuse (each reason's library property is checked below)
REFUSED = {("betty", m, p) for m in PEERS["betty"] for p in ("bf16", "fp16")} | {
    ("torchopt", "cg", "fp16"), ("jaxopt", "cg", "fp16"), ("optimistix", "cg", "fp16"),
    ("optimistix", "exact", "fp16"), ("boat", "unroll", "fp16")}


def _peer(name: str):
    why = registry.availability("backend", name)
    if why is not None:
        pytest.skip(f"backend {name} unavailable: {why}")
    return registry.get("backend", name)()


def _base(peer: str) -> str:
    return "jax" if issubclass(registry.get("backend", peer), JaxBackend) else "torch"


def _run(tmp_path, peer: str, method: str, *over: str):
    keys = {o.split("=")[0] for o in over}
    base = [a for a in RUN if a.split("=")[0] not in keys]
    return execute(prepare(compose([*base, f"backend={peer}", f"method={method}", f"results_dir={tmp_path}", *over])))


@pytest.mark.parametrize("peer,method", CASES)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_each_peer_refuses_exactly_the_combinations_its_library_sidesteps(peer, method, name):
    why = _peer(peer).precision_refusal(name, method)
    assert (why is not None) == ((peer, method, name) in REFUSED), why
    if why:
        assert f"precision={name}" in why and "\n" not in why


@pytest.mark.parametrize("peer,whole", [("boat", None), ("torchopt", None), ("jaxopt", None),
                                        ("optimistix", "ImplicitAdjoint")])
def test_a_method_specific_refusal_is_not_the_backends_as_a_whole(peer, whole):
    """Asked without a method (the backend as a whole), only a refusal of every method answers."""
    why = _peer(peer).precision_refusal("fp16")
    assert (why is None) if whole is None else (whole in why), why


@pytest.mark.parametrize("peer,method", CASES)
def test_a_short_bf16_run_is_ok_with_a_finite_hypergradient_error_or_unsupported_with_the_reason(tmp_path, peer,
                                                                                                 method):
    why = _peer(peer).precision_refusal("bf16", method)
    record = _run(tmp_path, peer, method, "precision=bf16")
    assert record["config"]["precision"]["name"] == "bf16"
    if why is not None:
        assert record["status"] == "unsupported" and record["reason"] == why
        return
    assert record["status"] == "ok", record.get("reason")
    err = record["metrics"]["hypergrad_rel_error"]
    assert err is not None and math.isfinite(err)


def test_betty_fp16_is_unsupported_on_the_cpu_with_the_reason(tmp_path):
    _peer("betty")
    record = _run(tmp_path, "betty", "darts", "precision=fp16")
    assert record["status"] == "unsupported"
    assert "CUDA-only" in record["reason"] and "GradScaler" in record["reason"]


@pytest.mark.parametrize("peer,method", [("boat", "unroll"), ("optimistix", "exact"), ("torchopt", "cg")])
def test_a_refused_fp16_run_is_recorded_unsupported_before_any_work(tmp_path, peer, method):
    why = _peer(peer).precision_refusal("fp16", method)
    record = _run(tmp_path, peer, method, "precision=fp16")
    assert record["status"] == "unsupported" and record["reason"] == why and "steps_done" not in record["metrics"]


def _hypergrad(name: str, method: str, prec: str) -> np.ndarray:
    backend = make_backend(name, "float32")
    task = _task()
    params, states, batches = _state(backend, task)
    levels = precision.in_precision(backend, task.levels(), prec)
    fn = hypergradient_fn(backend, registry.get("method", method)(), method_cfg(method), levels, 2)
    return _flat(backend, fn(params, states, batches))


@pytest.mark.parametrize("peer,method", [c for c in CASES if c[0] != "betty"])
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_a_peer_rounds_like_its_base_backend_in_the_low_precision(peer, method, name):
    """The low precision reaches the library's path: the peer's hypergradient (quadratic, d = 8, away from the best
    response) is its base backend's in the same precision to well within the gap that precision opens to fp32
    (measured, relative: ≤ 1e-8 for every torch peer and jaxopt; optimistix in bf16 1.6e-3 (cg) and 1.3e-3 (exact)
    against gaps of 8.3e-3 and 8.6e-3). fp16 too where it is refused: the refusals are about overflows, not rounding."""
    _peer(peer)
    base = _base(peer)
    got, want, full = _hypergrad(peer, method, name), _hypergrad(base, method, name), _hypergrad(base, method, "fp32")
    assert np.isfinite(got).all()
    gap = np.linalg.norm(want - full)
    assert gap > 0, "the low precision changed the base backend's hypergradient"
    assert np.linalg.norm(got - want) < 0.5 * gap, (np.linalg.norm(got - want), gap)


# ---- the library properties behind the fp16 refusals ---------------------------------------------------------------
def _edge(backend, levels=None):
    task = _task()
    params, states, batches = _state(backend, task)
    levels = levels or task.levels()
    return response(backend, levels[1], params, states, batches[levels[1].name], 2)


@pytest.mark.parametrize("peer", ["torchopt", "jaxopt"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_torchopt_and_jaxopt_cg_turn_a_non_finite_cotangent_into_a_finite_zero(peer, bad):
    """Why their cg is refused in fp16: the library's cg loop stops on a NaN residual and returns its start, so the
    response VJP of a cotangent with an overflow in it is a finite zero — where the base backend's is NaN (which the
    suite's loss scale skips)."""
    _peer(peer)
    outs = {}
    for name in (peer, _base(peer)):
        backend = make_backend(name, "float32")
        v = {"w": backend.asarray(np.r_[bad, np.ones(7)])}
        vjp = backend.override("cg") or registry.get("method", "cg")().response_vjp
        outs[name] = _flat(backend, vjp(backend, _edge(backend), v, method_cfg("cg", iterations=3)))
    assert (outs[peer] == 0).all(), outs[peer]
    assert not np.isfinite(outs[_base(peer)]).any()


@pytest.mark.parametrize("method", ["cg", "exact"])
def test_optimistix_raises_on_a_non_finite_solve(method):
    """Why optimistix is refused in fp16: ImplicitAdjoint's lineax solve raises on a non-finite cotangent (the jax
    backend's response VJP is NaN there, a skipped step under the suite's loss scale)."""
    _peer("optimistix")
    backend = make_backend("optimistix", "float32")
    v = {"w": backend.asarray(np.r_[np.inf, np.ones(7)])}
    with pytest.raises(RuntimeError, match="non-finite"):
        backend.block(backend.override(method)(backend, _edge(backend), v, method_cfg(method)))


def test_boat_rad_zeroes_an_fp16_pullback_that_overflows():
    """Why boat × unroll is refused in fp16: with a finite cotangent whose pullback through the fp16 steps overflows
    (1e6 > fp16's 65504), the higher engine's unroll (the same steps) is NaN and BOAT's RAD returns zeros; a cotangent
    that fits gives both the same finite VJP."""
    _peer("boat")
    outs = {}
    for name in ("higher", "boat"):
        backend = make_backend(name, "float32")
        task = _task()
        r = _edge(backend, precision.in_precision(backend, task.levels(), "fp16"))
        vjp = backend.override("unroll") or registry.get("method", "unroll")().response_vjp
        outs[name] = [_flat(backend, vjp(backend, r, {"w": backend.asarray(np.full(8, big))}, method_cfg("unroll")))
                      for big in (1e2, 1e6)]
    np.testing.assert_allclose(outs["boat"][0], outs["higher"][0], rtol=1e-6)
    assert np.isfinite(outs["boat"][0]).all() and np.abs(outs["boat"][0]).max() > 0
    assert np.isnan(outs["higher"][1]).all() and (outs["boat"][1] == 0).all()


@pytest.mark.parametrize("peer,method", [("boat", "cg"), ("torchopt", "exact"), ("jaxopt", "exact")])
def test_a_forced_fp16_overflow_is_skipped_on_a_peer_as_on_its_base_backend(tmp_path, peer, method):
    """init_scale 1e6 overflows fp16 at once: the run skips steps (inner and hypergradient) until the scale fits and
    ends ok, with the same skipped steps and error as its base backend's run (quadratic, d = 32, 12 steps: 6 inner and
    10 hypergradient steps skipped, error 9.2e-4 for cg, 4.6e-4 / 4.3e-4 for exact on torch / jax — the peer's equal
    to its base's to the digits shown)."""
    _peer(peer)
    over = ("precision=fp16", "precision.init_scale=1e6", "task.d=32", "steps=12")
    got, want = (_run(tmp_path / b, b, method, *over) for b in (peer, _base(peer)))
    assert got["status"] == want["status"] == "ok", (got.get("reason"), want.get("reason"))
    m, w = got["metrics"], want["metrics"]
    assert m["overflows_hypergrad"] > 0 and m["overflows_inner"] > 0
    assert (m["overflows_inner"], m["overflows_hypergrad"]) == (w["overflows_inner"], w["overflows_hypergrad"])
    assert math.isfinite(m["hypergrad_rel_error"])
    assert abs(m["hypergrad_rel_error"] - w["hypergrad_rel_error"]) <= 0.1 * w["hypergrad_rel_error"]
