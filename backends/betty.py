"""``betty``: Betty (betty-ml 0.2.1, the seed paper's library) computing each edge's hypergradient with its own
``betty.hypergradient`` functions (``darts``, ``neumann``, ``cg``, ``sama``) on Betty ``ImplicitProblem``\\ s built from
the task's levels.

Install: ``pip install --no-deps --ignore-requires-python betty-ml==0.2.1`` (it declares Python < 3.11 and pins old
packages; on 3.11 with torch 2.13 it imports and runs without them).

Per edge (lower level θ, upper level λ), at the state the runner reached: a lower ``ImplicitProblem`` whose module
holds θ and whose ``training_step`` is the task's lower loss f(θ, λ) on the edge's batch, an upper one holding λ, a
Betty ``Config`` carrying the method's knobs (``darts_alpha``, ``neumann_iterations``/``neumann_alpha``,
``cg_iterations``, ``sama_adam_alpha``), and for ``sama`` a ``torch.optim`` optimizer of the lower level's kind whose
state holds the runner's Adam moments and last gradient (``methods/sama.py``). Betty's function is called as its
Engine calls it (``jvp_fn(vector, lower, upper, sync=False)``) and returns ∂λ of the edge. The suite's loop drives
training (same batches, same optimizer steps as every backend); Betty's ``Engine`` loop is not used.

Betty 0.2.1's released ``cg`` builds the next search direction from the *old* residual (``p_new = r + β p`` with ``r``
before the update; fixed after the release) and also scales only the curvature, not the residual update, by
``cg_alpha``: ``mlo-bench verify`` runs it and its row fails with the measured error (``known_issues``).

Unsupported here (recorded as ``unsupported`` with the reason): ``unroll`` (Betty's ``IterativeProblem`` fails on CPU
in 0.2.1), and — features the suite does not expose but a user would reach for — fp16, early stopping, ``reinforce``
and DDP, which fail on CPU.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.backends._peers import Peer, rebuild
from mlo_bench.backends.torch import TorchBackend
from mlo_bench.suite.engine.trees import tree_leaves
from mlo_bench.suite.plugins.registry import register

INSTALL = "pip install --no-deps --ignore-requires-python betty-ml==0.2.1"
CPU_FAILS = "fails on CPU in betty-ml 0.2.1"


def _problem_class() -> type:
    from betty.problems import ImplicitProblem

    class Level(ImplicitProblem):
        """One level of the task as a Betty problem: its parameters in a module, its loss as ``training_step``."""

        def __init__(self, name: str, config: Any, params: Any, optimizer_of: Any = None) -> None:
            import torch

            module = torch.nn.ParameterList([torch.nn.Parameter(t.detach().clone()) for t in tree_leaves(params)])
            optimizer = optimizer_of(list(module.parameters())) if optimizer_of else None
            super().__init__(name, config, module=module, optimizer=optimizer)
            self.tree, self.loss_fn = params, None

        def params_tree(self) -> Any:
            return rebuild(self.tree, list(self.module.parameters()))

        def training_step(self, batch: Any) -> Any:
            return self.loss_fn()

    return Level


def _config(method: str, cfg: Any) -> Any:
    from betty.configs import Config

    knobs = {"darts": {"darts_alpha": getattr(cfg, "alpha", 0.01)},
             "neumann": {"neumann_iterations": getattr(cfg, "iterations", 1),
                         "neumann_alpha": getattr(cfg, "alpha", 1.0)},
             "cg": {"cg_iterations": getattr(cfg, "iterations", 1)},
             "sama": {"sama_adam_alpha": getattr(cfg, "alpha", 1.0)}}[method]
    return Config(type=method, **knobs)


def _adam_of(backend: Any, r: Any) -> Any:
    """``params -> torch.optim.Adam`` whose per-parameter state is the runner's moments and SAMA's last gradient."""
    from mlo_bench.methods.sama import last_gradient

    torch, opt = backend.torch, r.optimizer
    moments = list(zip(tree_leaves(r.state["m"]), tree_leaves(r.state["v"]),
                       tree_leaves(last_gradient(backend, r)), strict=True))
    started = float(backend.to_numpy(r.state["count"])) > 0

    def make(params: list[Any]) -> Any:
        from mlo_bench.suite.engine.optim import learning_rate

        lr = learning_rate(opt, r.state["count"])  # a float, or an array with a step schedule
        lr = lr if isinstance(lr, float) else float(backend.to_numpy(lr))
        adam = torch.optim.Adam(params, lr=lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)
        if started:  # an empty state before the first step, as Betty's optimizer has
            for p, (m, s, g) in zip(params, moments, strict=True):
                adam.state[p] = {"exp_avg": m.detach(), "exp_avg_sq": s.detach(), "last_grad": g.detach()}
        return adam

    return make


def _betty_vjp(method: str):
    def response_vjp(backend: Any, r: Any, v: Any, cfg: Any) -> Any:
        import betty.hypergradient as bh

        Level = _problem_class()
        config = _config(method, cfg)
        needs_adam = method == "sama" and r.optimizer is not None and r.optimizer.name == "adam"
        lower = Level(f"{r.level or 'lower'}", config, r.lower, _adam_of(backend, r) if needs_adam else None)
        if method == "sama" and not needs_adam:  # Betty preconditions by the optimizer's kind: SGD is the identity
            lower.optimizer = backend.torch.optim.SGD(list(lower.module.parameters()), lr=1.0)
        upper = Level("upper", config, r.upper)
        lower.loss_fn = lambda: r.loss(lower.params_tree(), upper.params_tree())
        with backend.torch.enable_grad():
            out = bh.jvp_fn_mapping[method]([t.detach() for t in tree_leaves(v)], lower, upper, False)
        return rebuild(r.upper, [o.detach() for o in out])

    return response_vjp


@register("backend")
class BettyBackend(Peer, TorchBackend):
    """Betty (betty-ml 0.2.1): darts, neumann, cg (the released, buggy one) and sama through betty.hypergradient."""

    name = "betty"
    library, dist, install = "betty", "betty-ml", INSTALL
    methods = {"darts": "betty.hypergradient.darts", "neumann": "betty.hypergradient.neumann",
               "cg": "betty.hypergradient.cg", "sama": "betty.hypergradient.sama"}
    features = {"unroll": f"Betty's IterativeProblem (unrolled differentiation) {CPU_FAILS}",
                "fp16": f"mixed precision {CPU_FAILS} (CUDA only)", "early_stopping": f"early stopping {CPU_FAILS}",
                "reinforce": f"betty.hypergradient.reinforce {CPU_FAILS}", "ddp": f"DDP {CPU_FAILS}"}
    parallel_reason = f"Betty's DDP (EngineConfig distributed training) {CPU_FAILS} (CUDA and NCCL only)"
    known_issues = {"cg": "betty-ml 0.2.1's released cg builds the search direction from the old residual "
                          "(p = r_old + beta*p; fixed after the release), so it is not conjugate gradient"}

    def library_vjp(self, method: str):
        return _betty_vjp(method)

    def path(self) -> str:
        return "betty.hypergradient on ImplicitProblems (the suite's loop drives training)"

    def precision_refusal(self, precision: str, method: str | None = None) -> str | None:
        """Betty's half precision is ``Config(fp16=True)``: a ``torch.cuda.amp.GradScaler`` in its own training loop
        (CUDA only), which this adapter does not drive (the suite's loop does): refused, with that reason."""
        where = "CUDA-only" if getattr(self, "device", "cpu") != "cuda" else "inside Betty's own Engine loop"
        return (f"precision={precision}: Betty's mixed precision (Config(fp16=True), a torch.cuda.amp.GradScaler) is "
                f"{where}; this adapter runs betty.hypergradient under the suite's loop, not Betty's Engine")
