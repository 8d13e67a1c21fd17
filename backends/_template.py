"""Template for a new backend: copy to ``backends/<name>.py``, fill in, and uncomment ``@register``.

Import the framework lazily (inside ``check_available`` / ``setup``) so that the module imports when the framework is
missing: ``mlo-bench list`` then shows the backend as unavailable with the import error, and its tests skip.
The contract is :class:`mlo_bench.suite.contract.Backend`; ``backends/torch.py`` is the reference implementation.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Backend
from mlo_bench.suite.measure.instruments import CpuPeakRSS
from mlo_bench.suite.plugins.registry import register  # noqa: F401


# @register("backend")   # uncomment in the copy
class TemplateBackend(Backend):
    """One line saying what engine this is."""

    name = "template"
    # Knobs, if any: a dataclass with validate(); `backend.<knob>=` on the command line, `self.config` here
    # (see NaiveConfig in backends/naive.py).
    # Config = TemplateConfig
    # Capabilities, where the engine has them (defaults and meaning: mlo_bench.suite.contract.Backend): fuses_step,
    # materialises, hvp_operator(f, x), compile_cache_stats(), known_issue(method), cuda_visible().

    @classmethod
    def check_available(cls) -> None:
        import numpy  # noqa: F401  -- replace with the framework's import; an ImportError says why it's missing

    def setup(self, dtype, device, seed):
        self.dtype, self.device = dtype, "cpu"
        self.ops = ...  # an object implementing mlo_bench.suite.contract.Ops for this framework's arrays
        self._mem = CpuPeakRSS()
        raise NotImplementedError("fill in the template")

    def asarray(self, x):
        raise NotImplementedError

    def to_numpy(self, x):
        raise NotImplementedError

    def grad(self, f):
        raise NotImplementedError

    def vjp(self, f, x):
        raise NotImplementedError

    def jvp(self, f, x, t):
        raise NotImplementedError

    def hvp(self, f, x, v):
        raise NotImplementedError

    def hessian(self, f, x):
        raise NotImplementedError

    def solve(self, a, b):
        raise NotImplementedError

    def block(self, tree):
        return tree

    def reset_peak_memory(self):
        self._mem.reset()

    def peak_memory_bytes(self):
        return self._mem.peak_bytes()
