"""``higher``: higher (0.2.1) — differentiable unrolled inner loops, the "naive unrolling" most Meta-Weight-Net code
uses: plain ``torch.autograd`` with ``create_graph=True`` and the graph kept until the outer backward, every inner
step taken by higher's differentiable optimizers (``higher.optim.DifferentiableSGD`` / ``DifferentiableAdam``).

Only ``unroll``: higher has no implicit differentiation. The runner's inner phase (the steps actually taken, same
batches as every backend) is differentiated in reverse mode with autograd (the naive backend's ``chain=reverse``
engine); each lower-level step is the differentiable optimizer's update (``_update``, what its ``step`` applies after
taking the gradient) on the suite's optimizer state, loaded into and read back from the optimizer's per-parameter
state each step. A fresh ``torch.optim`` optimizer of the level's kind provides the hyper-parameters.

Only the steps on the differentiated graph go through higher (inner steps of the unrolled phase); a step nothing
differentiates (the upper level's own update) is the suite's ``torch.optim``-semantics optimizer, as the meta-optimizer
of MWN code written with higher is a plain ``torch.optim`` one.

higher's Adam adds ε to √v before the bias correction (lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε), the old ``torch.optim``
form) where the suite's optimizer follows current ``torch.optim`` (m̂/(√v̂ + ε)); the difference is O(ε/√v̂) per step
and shows only with an Adam lower level (the quadratic task's is SGD).
"""

from __future__ import annotations

from typing import Any

from mlo_bench.backends._peers import Peer, rebuild
from mlo_bench.backends.naive import NaiveBackend
from mlo_bench.backends.torch import TorchOps
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.optim import learning_rate
from mlo_bench.suite.engine.trees import tree_leaves
from mlo_bench.suite.plugins.registry import NoConfig, register

Tree = Any


class HigherOps(TorchOps):
    """The torch ops, with the lower levels' optimizer steps taken by higher's differentiable optimizers."""

    def optimizer_update(self, cfg: Any, grads: Tree, state: dict[str, Any], params: Tree) -> tuple[Tree, dict]:
        import higher.optim

        torch = self.t
        p, g = tree_leaves(params), tree_leaves(grads)
        if not any(t.requires_grad for t in p + g):  # a step nothing differentiates (the outer update): torch.optim's
            return optim.update(TorchOps(torch), cfg, grads, state, params)  # semantics, as MWN code with higher has
        started = float(state["count"]) > 0
        lr = learning_rate(cfg, state["count"])
        lr = float(lr) if not isinstance(lr, float) else lr
        ref = [torch.zeros(1) for _ in p]
        if cfg.name == "sgd":
            opt = torch.optim.SGD(ref, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            diff = higher.optim.DifferentiableSGD(opt, ref)
            if cfg.momentum and started:
                for i, buf in enumerate(tree_leaves(state["momentum"])):
                    diff.state[0][i] = {"momentum_buffer": buf}
        else:
            opt = torch.optim.Adam(ref, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                   weight_decay=cfg.weight_decay)
            diff = higher.optim.DifferentiableAdam(opt, ref)
            if started:
                moments = zip(tree_leaves(state["m"]), tree_leaves(state["v"]), strict=True)
                for i, (m, v) in enumerate(moments):
                    diff.state[0][i] = {"step": int(round(float(state["count"]))), "exp_avg": m, "exp_avg_sq": v}
        diff.param_groups[0]["params"] = list(p)
        diff._update([list(g)])
        out = dict(state, count=state["count"] + 1.0)
        new = rebuild(params, list(diff.param_groups[0]["params"]))
        if cfg.name == "sgd" and cfg.momentum:
            out["momentum"] = rebuild(params, [diff.state[0][i]["momentum_buffer"] for i in range(len(p))])
        elif cfg.name == "adam":
            out["m"] = rebuild(params, [diff.state[0][i]["exp_avg"] for i in range(len(p))])
            out["v"] = rebuild(params, [diff.state[0][i]["exp_avg_sq"] for i in range(len(p))])
        return new, out


@register("backend")
class HigherBackend(Peer, NaiveBackend):
    """higher 0.2.1: unrolled inner loops through its differentiable optimizers, plain autograd (graph kept)."""

    name = "higher"
    Config = NoConfig
    library, dist = "higher", "higher"
    methods = {"unroll": "higher.optim.DifferentiableSGD / DifferentiableAdam, torch.autograd with create_graph"}

    @property
    def reverse(self) -> bool:  # one VJP per level through the kept graph, as MWN code written with higher does
        return True

    @property
    def materialises(self) -> bool:
        return False

    def setup(self, dtype: str, device: str, seed: int) -> None:
        super().setup(dtype, device, seed)
        self.ops = HigherOps(self.torch)

    def path(self) -> str:
        return "higher.optim differentiable optimizers on torch.autograd (graph kept)"
