"""What the peer engines share: the libraries people choose between (betty, torchopt, higher, jaxopt, boat,
optimistix) as backends.

A peer engine runs the suite's own task definitions (same losses, data, initial parameters and batch order) on the
torch or jax backend it subclasses, and routes the hypergradient through its library's own API: each method it
runs is listed in ``methods`` with the library call that computes it (``override``); every other method is
``unsupported`` with the reason (``supports``), and so is every library feature that fails here (``features``:
recorded, not hidden). ``known_issues`` names a method whose released implementation is known to be wrong: verify
still runs it (the certificate must catch it) and prints the reason beside the failing row.

Mixed precision (``precision=bf16|fp16``, docs/precision.md): a peer's losses are the suite's levels under its base
backend's autocast (torch) or jmp policy (jax), and every optimizer step, its library's included, takes gradients the
suite has already unscaled and is skipped by the suite where they are not finite. ``precision_refusals`` names a
precision × method whose library code sidesteps that — for fp16, a solver that turns an overflow into a finite
result or raises on it, so the loss scale never sees it — recorded ``unsupported`` with the reason.

A missing library is an availability reason that carries the install command (``mlo-bench list``). ``versions()``
records the library's version, which path ran (``peer_path``, e.g. torchopt's pure-Python fallback on torch 2.13) and
the library properties the peer measured on its library at set-up (``peer_notes``: what the library does differently
from the suite and how the adapter handles it; the report lists them beside the paths).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from typing import Any, ClassVar

from mlo_bench.suite.contract import Unavailable
from mlo_bench.suite.engine.trees import tree_unflatten

Tree = Any
#: the optional extra that installs torchopt, higher, jaxopt and optimistix (betty and boat need their own step: see
#: backends/betty.py, backends/boat.py)
EXTRA = 'pip install -e ".[peers]"'
#: knobs of the suite's methods that the libraries do not have, at the value that matches what the library runs:
#: cg / neumann started from the last solution (method state), cg stopped at negative curvature
SUITE_ONLY_KNOBS: dict[str, Any] = {"warm_start": False, "negative_curvature": "continue"}
#: why a library's cg that stops on a NaN residual (TorchOpt's solve_cg, JAXopt's through jax.scipy's cg) cannot run
#: under the suite's fp16 loss scale (backends/torchopt.py, jaxopt.py)
CG_HIDES_OVERFLOW = ("its cg loop stops when the residual is NaN and returns the iterate it had (zero for a non-finite "
                     "cotangent or Hessian-vector product), so an fp16 overflow would be a finite hypergradient the "
                     "suite's loss scale never skips")


#: ``tree`` with its leaves (in :func:`tree_leaves` order) replaced by ``leaves``
rebuild = tree_unflatten


class Peer:
    """Mixin for a peer engine; put it first in the bases, before the torch or jax backend it runs on."""

    #: the import name of the library, its PyPI distribution and the command that installs it
    library: ClassVar[str]
    dist: ClassVar[str]
    install: ClassVar[str] = EXTRA
    #: suite method -> the library API that computes its hypergradient here
    methods: ClassVar[dict[str, str]] = {}
    #: library features that do not run here -> why (recorded as ``unsupported``; see the module docstring)
    features: ClassVar[dict[str, str]] = {}
    #: method -> a known defect of the released library that verify reports beside the row
    known_issues: ClassVar[dict[str, str]] = {}
    #: ``(precision, method)`` -> why the library's own code for that method bypasses the suite's low-precision path
    #: or its fp16 loss scale (method ``None``: every method); recorded ``unsupported`` (:meth:`precision_refusal`)
    precision_refusals: ClassVar[dict[tuple[str, str | None], str]] = {}

    @classmethod
    def check_available(cls) -> None:
        super().check_available()  # type: ignore[misc]  # the framework underneath (torch or jax)
        try:
            importlib.import_module(cls.library)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the reason
            raise Unavailable(f"{cls.dist} is not installed ({type(exc).__name__}: {exc}); "
                              f"install it with: {cls.install}") from None

    def supports(self, method: str) -> str | None:
        if method in self.methods:
            return None
        if method in self.features:
            return self.features[method]
        return f"not in {self.dist}: this peer runs only its library's own methods ({', '.join(self.methods)})"

    def supports_knobs(self, method: str, knobs: Any) -> str | None:
        """A knob of the suite's method that no library has (:data:`SUITE_ONLY_KNOBS`), away from its default: the
        library would silently run the plain method under the same name."""
        for knob, default in SUITE_ONLY_KNOBS.items():
            value = getattr(knobs, knob, default)
            if value != default:
                return (f"{self.dist} has no counterpart of the suite's method.{knob}={value} "
                        f"({method} runs it only at {knob}={default})")
        return None

    def known_issue(self, method: str) -> str | None:
        return self.known_issues.get(method)

    def precision_refusal(self, precision: str, method: str | None = None) -> str | None:
        """:attr:`precision_refusals`' reason for ``precision`` (every method's, then ``method``'s), else the torch or
        jax backend's answer: a peer's losses run under the suite's autocast or jmp policy and its optimizer steps
        take the suite's unscaled gradients, unless the library's own code for the method sidesteps them."""
        why = self.precision_refusals.get((precision, None))
        if why:
            return f"precision={precision} on {self.dist}: {why}"
        why = self.precision_refusals.get((precision, method)) if method is not None else None
        if why:
            return f"precision={precision} × method={method} on {self.dist}: {why}"
        return super().precision_refusal(precision, method)  # type: ignore[misc]

    #: a peer runs one rank: its hypergradient goes through its library, whose derivatives the suite's data-parallel
    #: reductions (backends/_torch_dist.py) never see; ``parallel_reason`` says what the library itself offers
    parallel: ClassVar[str | None] = None
    parallel_reason: ClassVar[str] = "its library has no data-parallel mode on this machine"

    def parallel_refusal(self, world_size: int) -> str | None:
        if world_size == 1:
            return None
        return f"{self.dist} at parallel.world_size={world_size}: {self.parallel_reason}"

    def override(self, method: str) -> Callable[..., Tree] | None:
        return self.library_vjp(method) if method in self.methods else None

    def library_vjp(self, method: str) -> Callable[..., Tree] | None:
        """The response VJP through the library's API (``None``: the method's generic one, e.g. ``unroll``, whose
        steps go through the library's optimizers instead)."""
        return None

    def path(self) -> str:
        """Which code path of the library runs here (recorded in provenance)."""
        return "python"

    def notes(self) -> list[str]:
        """Properties of the library measured here (by calling it), each one line; recorded as ``peer_notes``."""
        return []

    def versions(self) -> dict[str, str]:
        try:
            version = metadata.version(self.dist)
        except metadata.PackageNotFoundError:
            version = "?"
        notes = self.notes()
        return {**super().versions(), self.dist: version, "peer_path": self.path(),  # type: ignore[misc]
                **({"peer_notes": " · ".join(notes)} if notes else {})}
