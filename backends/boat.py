"""``boat``: BOAT (boat-torch 1.1.1, "a compositional operation toolbox for gradient-based bi-level optimization") —
each edge's hypergradient through BOAT's own hyper-gradient operations (``boat_torch.na_ol``), built by its factory
``makes_functional_na_operation`` and called as its ``Problem.run_iter`` calls them.

Install: ``pip install --no-deps boat-torch==1.1.1`` (it pins numpy <= 1.26 and pulls torchvision; at import it needs
only torch, numpy, higher and matplotlib, which the ``peers`` extra brings, and runs with numpy 2).

BOAT runs on higher (its lower loop, the ``NGD`` gradient-mapping op, steps ``higher.innerloop_ctx``'s differentiable
optimizer), so this engine is the ``higher`` engine (plain autograd, reverse mode, the lower levels' steps through
higher's optimizers) with BOAT's operations routing the hypergradient. Per edge (lower level θ, upper λ), at the state
the runner reached: θ and λ as the parameters of two modules (BOAT's ``ll_model`` / ``ul_model``, ``ll_var`` /
``ul_var``), BOAT's lower objective the task's lower loss f(θ, λ), its upper objective ⟨v, θ⟩ (the cotangent the suite
pushes down the chain: BOAT then returns the edge's response VJP, its direct term ∂/∂λ being zero), and the auxiliary
model ``higher.innerloop_ctx`` makes of the lower module with no step taken (the suite's loop drives training, as for
every engine). The operation writes λ's ``.grad``, which is the edge's VJP:

- ``cg`` ← BOAT ``CG`` (Rajeswaran/Pedregosa's implicit gradient by conjugate gradient on the fixed-point map
  θ − η∇_θ f): ``CG.k`` = K iterations, ``CG.tolerance`` = 0 so exactly K run (BOAT's ``cg_step`` returns the iterate
  *before* the one that met a positive tolerance, another reason to keep it at 0); η = 1 (it cancels: the system is
  ηH x = v, applied through −η ∂²f/∂λ∂θ).
- ``neumann`` ← BOAT ``NS`` (Lorraine et al.'s Neumann series on the same map): η Σ_{j=0..K} (I − ηH)^j with
  ``CG.k`` = K and η the lower optimizer's learning rate, which BOAT reads as its step: handed ``method.alpha``, so
  it is the suite's ``neumann`` at the same knobs (Betty's form).
- ``darts`` ← BOAT ``FD`` (DARTS's finite difference): radius ``FD.r`` = ``method.alpha`` (ε = r/‖v‖), scaled by
  the lower optimizer's learning rate, handed ``method.xi`` — the suite's ``darts`` (Liu et al.'s ξ).
- ``unroll`` ← BOAT ``RAD`` (reverse-mode through the lower loop): BOAT's NGD steps are higher's differentiable
  optimizer, as this engine's; in a run the runner takes those steps and pulls back through them with autograd
  (what RAD's ``torch.autograd.grad`` of the upper loss does); on one edge (the oracle check) the K steps are taken
  with higher and BOAT's ``RAD.compute_gradients`` differentiates ⟨v, θ_K⟩ through them.

Certified: ``mlo-bench verify task=quadratic dtype=float64 backend=boat`` (5 outer steps against torch): cg 4.8e-16,
neumann 1.6e-16, darts 2.4e-13, unroll 0 (first hypergradient; parameters after 5 steps ≤ 7.9e-14), and each method's
error against the oracle equal to torch's (cg 8.9e-4 at K = 10); on the MWN demo's settings (``task=mwn
task.upper.lr=3e-3 dtype=float64``) cg 2.1e-14, neumann 8.6e-15, darts 2.7e-14, unroll 0 — all within 1e-6 (2-core
CPU at load 9–11; 37 s and 113 s with the optimistix rows).

Why the operations and not BOAT's ``Problem``: its ``run_iter`` always takes its own lower steps (``check_status``
asserts ``RGT.truncate_iter`` (0) < ``lower_iters``, so at least one), steps the upper optimizer unless
``return_grad``, and writes its loss history to a JSON file every iteration (``save_losses``); the operations are what
it calls for the hypergradient, with the arguments it passes.

One BOAT property the adapter works around (measured at set-up, :func:`nan_becomes_zero`, recorded as
``provenance.peer_notes``): ``grad_unused_zero``, which every operation uses for the upper loss's gradients (the
cotangent v in CG / NS / FD, the whole hypergradient in RAD), returns zeros for a gradient with a NaN in it — a diverged
run would go on with a zero hypergradient. When v (or RAD's θ_K) is not finite the adapter hands back NaN, so the
runner records ``diverged`` as on every engine.

Mixed precision (docs/precision.md): BOAT's objectives are the suite's level losses under the torch backend's
autocast, and its CG / NS / FD are linear in the (loss-scaled) cotangent — FD's radius r/‖v‖ is the same for v and
S·v — so they run in bf16 and fp16 as the torch backend's methods do. ``unroll`` in fp16 is refused: RAD takes the
whole hypergradient through ``grad_unused_zero``, so a NaN pullback through the fp16 steps (cotangent finite, θ_K
finite) becomes a zero hypergradient the loss scale never sees (cotangent 1e6 on the quadratic: NaN on the higher
engine, zeros through RAD; tests/test_peers_precision.py). In a run the steps are pulled back by the runner, so only
the hypergradient check goes through RAD: with ``precision.growth_interval=1`` (MWN demo, 50 steps) it recorded
error 1 (a zero hypergradient) where higher, on the same trajectory, recorded none.

Not the suite's methods (``unsupported`` with the reason, :data:`FEATURES`): BOAT's other hyper-gradient operations
(IAD, PTT, RGT, FOA, IGA), its gradient-mapping ops that change the lower steps (GDA, DI, DM; NGD, the plain lower
loop, is the suite's own), its first-order solvers (VSO, VFO, MESO, PGDO), which run their own lower loop and step the
upper optimizer themselves; and ``exact`` (BOAT has no dense solve).
"""

from __future__ import annotations

from typing import Any

from mlo_bench.backends._peers import rebuild
from mlo_bench.backends.higher import HigherBackend
from mlo_bench.suite.engine.trees import tree_leaves
from mlo_bench.suite.plugins.registry import register

Tree = Any
INSTALL = "pip install -e \".[peers]\" && pip install --no-deps boat-torch==1.1.1"
#: suite method -> (BOAT's na_op, what its config's lower optimizer lr is: the method's knob or 1.0)
OPS = {"cg": ("CG", None), "neumann": ("NS", "alpha"), "darts": ("FD", "xi"), "unroll": ("RAD", None)}
NOT_THE_SUITES = "not a method of the suite's; it would be a method of its own (a new name), not added here"
SOLVER = ("a whole first-order solver: its optimize() runs its own lower loop and steps the upper optimizer itself, "
          "not a hypergradient of the suite's loop")
FEATURES = {
    "exact": "boat-torch 1.1.1 has no dense (materialised Hessian) solve",
    "iad": "BOAT's IAD differentiates w.r.t. the lower level's initialisation (θ₀ as the upper variable, MAML-style): "
           "the suite's levels keep θ and λ apart",
    "ptt": f"BOAT's PTT (pessimistic trajectory truncation, Liu et al. 2021) backpropagates from the inner step of "
           f"largest upper loss: {NOT_THE_SUITES}",
    "rgt": f"BOAT's RGT (truncated back-propagation, Shaban et al. 2019): {NOT_THE_SUITES}",
    "foa": "BOAT's FOA (first-order approximation) is defined with IAD (Reptile-style), see iad",
    "iga": f"BOAT's IGA (implicit gradient approximation, Liu et al. 2024): {NOT_THE_SUITES}",
    "vso": f"BOAT's VSO (BOME, Liu et al. 2022) is {SOLVER}",
    "vfo": f"BOAT's VFO (value-function interior point, Liu et al. 2021) is {SOLVER}",
    "meso": f"BOAT's MESO (Moreau-envelope single loop, Liu et al. 2024) is {SOLVER}",
    "pgdo": f"BOAT's PGDO (penalty-based gradient descent, Shen & Chen 2023) is {SOLVER}",
    # gradient-mapping ops other than NGD (the plain lower loop, which is the suite's): they change the lower steps
    "gda": "BOAT's GDA (gradient descent aggregation, Liu et al. 2020) mixes the upper loss into the lower steps: "
           "the suite's lower level takes its own loss's steps",
    "di": "BOAT's DI (dynamic initialisation) learns the lower level's starting point, see iad",
    "dm": f"BOAT's DM (dual multipliers, Liu et al. 2023) adds a multiplier loop to the lower steps: {NOT_THE_SUITES}",
}


def solver_config(method: str, cfg: Any, ll_var: list, torch: Any) -> dict[str, Any]:
    """BOAT's ``solver_config`` for one operation: the keys its na_ol operations read, at the method's knobs."""
    op, lr_knob = OPS[method]
    lr = float(getattr(cfg, lr_knob)) if lr_knob else 1.0
    return {"gm_op": ["NGD"], "na_op": [op], "fo_op": None,
            "lower_level_opt": torch.optim.SGD(ll_var, lr=lr),
            "CG": {"k": int(getattr(cfg, "iterations", 1)), "tolerance": 0.0},
            "FD": {"r": float(getattr(cfg, "alpha", 0.01))},
            "GDA": {"alpha_init": 0.0, "alpha_decay": 1.0}, "RGT": {"truncate_iter": 0}}


def _objectives(r: Any, v: Tree) -> tuple[Any, Any]:
    """BOAT's ``(ll_objective, ul_objective)``: ``(feed_dict, ul_model, ll_model, params=None) -> loss``."""
    cotangent = [t.detach() for t in tree_leaves(v)]

    def lower_of(ll_model: Any, params: Any) -> list:
        return list(params) if params is not None else list(ll_model.parameters())

    def ll_objective(feed: Any, ul_model: Any, ll_model: Any, params: Any = None) -> Any:
        return r.loss(rebuild(r.lower, lower_of(ll_model, params)), rebuild(r.upper, list(ul_model.parameters())))

    def ul_objective(feed: Any, ul_model: Any, ll_model: Any, params: Any = None) -> Any:
        return sum((c * p).sum() for c, p in zip(cotangent, lower_of(ll_model, params), strict=True))

    return ll_objective, ul_objective


def _unrolled(r: Any, lower: Any, upper: Any) -> list:
    """θ_K after the edge's K steps from the lower module's θ (higher's differentiable optimizer: this engine's ops),
    a function of the upper module's λ."""
    theta, state = rebuild(r.lower, list(lower.parameters())), r.state
    lam = rebuild(r.upper, list(upper.parameters()))
    for _ in range(r.unroll_steps):
        theta, state = r.step(theta, state, lam)
    return tree_leaves(theta)


def nan_becomes_zero(torch: Any) -> bool:
    """Whether BOAT's ``grad_unused_zero`` returns zeros for a gradient that is NaN (boat-torch 1.1.1: it does)."""
    from boat_torch.utils.op_utils import grad_unused_zero

    x = torch.ones(2, dtype=torch.float64, requires_grad=True)
    (g,) = grad_unused_zero((x * float("nan")).sum(), [x])
    return bool((g == 0).all())


def _finite(torch: Any, leaves: list) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in leaves)


def _boat_vjp(method: str):
    def response_vjp(backend: Any, r: Any, v: Tree, cfg: Any) -> Tree:
        import higher
        from boat_torch.na_ol import makes_functional_na_operation

        torch = backend.torch
        lower = torch.nn.ParameterList([torch.nn.Parameter(t.detach().clone()) for t in tree_leaves(r.lower)])
        upper = torch.nn.ParameterList([torch.nn.Parameter(t.detach().clone()) for t in tree_leaves(r.upper)])
        ll_var, ul_var = list(lower.parameters()), list(upper.parameters())
        config = solver_config(method, cfg, ll_var, torch)
        ll_objective, ul_objective = _objectives(r, v)
        op = makes_functional_na_operation(
            custom_order=config["na_op"], ul_objective=ul_objective, ll_objective=ll_objective, ll_model=lower,
            ul_model=upper, ll_var=ll_var, ul_var=ul_var, solver_config=config)
        with torch.enable_grad(), higher.innerloop_ctx(lower, config["lower_level_opt"], copy_initial_weights=False,
                                                       track_higher_grads=method == "unroll") as (aux, _):
            extra = {"lower_model_params": _unrolled(r, lower, upper)} if method == "unroll" else {}
            if not _finite(torch, tree_leaves(v) + extra.get("lower_model_params", [])):  # BOAT would zero it
                return rebuild(r.upper, [torch.full_like(p, float("nan")) for p in ul_var])
            op.compute_gradients(ll_feed_dict={}, ul_feed_dict={}, auxiliary_model=aux, max_loss_iter=0, **extra)
        return rebuild(r.upper, [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in ul_var])

    return response_vjp


@register("backend")
class BoatBackend(HigherBackend):
    """BOAT (boat-torch 1.1.1): CG, NS, FD and RAD through boat_torch.na_ol on higher's differentiable optimizers."""

    name = "boat"
    library, dist, install = "boat_torch", "boat-torch", INSTALL
    methods = {method: f"boat_torch.na_ol.{op}" + (" (steps: higher's differentiable optimizers)"
                                                    if method == "unroll" else "")
               for method, (op, _) in OPS.items()}
    features = FEATURES
    precision_refusals = {("fp16", "unroll"): "BOAT's RAD takes the hypergradient through grad_unused_zero, which "
                                              "returns zeros for a NaN gradient, so an fp16 overflow in the pullback "
                                              "is a zero hypergradient the suite's loss scale never sees"}

    def library_vjp(self, method: str):
        return _boat_vjp(method)

    def notes(self) -> list[str]:
        if not nan_becomes_zero(self.torch):
            return []
        return ["BOAT's grad_unused_zero returns zeros for a NaN gradient (the upper loss's, in CG / NS / FD / RAD): "
                "the adapter hands back NaN for a non-finite cotangent, so divergence is still recorded"]

    def path(self) -> str:
        return "boat_torch.na_ol operations on higher's innerloop_ctx (the suite's loop drives training)"
