"""The functional optimizers against torch.optim (the semantics they document)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_backend

from mlo_bench.suite.engine import optim


@pytest.mark.parametrize("cfg,reference", [
    (optim.OptimizerConfig("sgd", lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (optim.OptimizerConfig("sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4)),
    (optim.OptimizerConfig("adam", lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    (optim.OptimizerConfig("adam", lr=1e-2, weight_decay=1e-3, beta1=0.8),
     lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3, betas=(0.8, 0.999))),
    (optim.OptimizerConfig("sgd", lr=0.1, milestones=[3, 5], gamma=0.1),
     None),
])
def test_optimizer_matches_torch_optim(cfg, reference):
    backend = make_backend("torch", "float64")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(5)
    target = rng.standard_normal(5)
    params = {"w": backend.asarray(w0)}
    state = optim.init(backend.ops, cfg, params)
    ref = torch.tensor(w0, requires_grad=True)
    opt = reference([ref]) if reference else torch.optim.SGD([ref], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestones, cfg.gamma) if cfg.milestones else None
    for _ in range(7):
        grads = {"w": 0.5 * (params["w"] - backend.asarray(target))}
        params, state = optim.update(backend.ops, cfg, grads, state, params)
        opt.zero_grad()
        ref.grad = 0.5 * (ref.detach() - torch.tensor(target))
        opt.step()
        if sched:
            sched.step()
    np.testing.assert_allclose(backend.to_numpy(params["w"]), ref.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_invalid_optimizer_values_name_the_key():
    with pytest.raises(ValueError, match="task.inner.lr must be > 0"):
        optim.OptimizerConfig("sgd", lr=-1.0).validate("task.inner")
    with pytest.raises(ValueError, match="task.outer.name must be one of"):
        optim.OptimizerConfig("rmsprop").validate("task.outer")
