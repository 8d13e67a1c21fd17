"""Data parallel on jax: one program over a ``jax.sharding.Mesh`` of N devices (``parallel.world_size=N``).

Parameters, optimizer states and the task's data are replicated (``NamedSharding(mesh, P())``); each level's per-step
arrays (:meth:`mlo_bench.suite.contract.Task.batch`: example indices, augmented images) are laid out along the mesh's
``batch`` axis (``P("batch")``), so every gather of examples, every loss and its derivatives are computed shard by
shard; the compiled programs are jitted with these input shardings and XLA's SPMD partitioner inserts the
collectives (the reductions over the batch in losses, gradients, HVPs; a selecting level's scores are gathered when
read). The program is the one-rank program: the same numbers up to the order of the partial sums.

On CPU the N devices are host devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, read when jax is
first imported (:func:`host_devices` sets it when jax is not imported yet). Across machines:
``jax.distributed.initialize()`` before the run (docs/parallel.md).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from mlo_bench.suite.contract import Unavailable

FLAG = "--xla_force_host_platform_device_count"


def xla_flags(world_size: int, flags: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) asking for ``world_size`` host devices: first, since XLA stops reading its
    flags at a token without ``--`` (a user's ``intra_op_parallelism_threads=1``, say)."""
    kept = [f for f in flags.split() if not f.startswith(FLAG)]
    return " ".join([f"{FLAG}={world_size}", *kept])


def host_devices(world_size: int) -> bool:
    """Ask XLA for ``world_size`` host (CPU) devices through ``XLA_FLAGS``; ``False`` when jax is already imported
    (too late: its device count is fixed) and no flag was set."""
    if "jax" in sys.modules:
        return False
    os.environ["XLA_FLAGS"] = xla_flags(world_size, os.environ.get("XLA_FLAGS", ""))
    return True


class Mesh:
    """The run's device mesh and its two layouts: ``replicated`` and ``batch`` (split along axis 0)."""

    def __init__(self, jax: Any, devices: list[Any], world_size: int) -> None:
        from jax.sharding import Mesh as JaxMesh
        from jax.sharding import NamedSharding, PartitionSpec

        if len(devices) < world_size:
            hint = f" (on CPU: XLA_FLAGS={FLAG}={world_size} before jax is imported)" if devices[0].platform == "cpu" \
                else ""
            raise Unavailable(f"parallel.world_size={world_size} needs {world_size} {devices[0].platform} devices; "
                              f"jax sees {len(devices)}{hint}")
        self.jax, self.world_size = jax, world_size
        self.mesh = JaxMesh(np.array(devices[:world_size]), ("batch",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch = NamedSharding(self.mesh, PartitionSpec("batch"))

    def shard(self, backend: Any, extra: dict[str, Any]) -> dict[str, Any]:
        """Per-step arrays along the batch axis (each must split evenly: jax shards equal blocks)."""
        out = {}
        for key, value in extra.items():
            value = np.asarray(value)
            if value.ndim == 0:
                out[key] = backend.asarray(value)
                continue
            if value.shape[0] % self.world_size:
                raise ValueError(f"per-step array {key!r} of {value.shape[0]} examples does not split evenly over "
                                 f"parallel.world_size={self.world_size} devices")
            if np.issubdtype(value.dtype, np.floating):
                value = value.astype(backend._dtype)
            out[key] = self.jax.device_put(value, self.batch)
        return out


class MeshMixin:
    """The jax backend's data-parallel part (mixed in before :class:`~mlo_bench.suite.contract.Backend`)."""

    #: data parallel as one program over a device mesh (backends/_jax_mesh.py)
    parallel = "mesh"
    _mesh = None

    @classmethod
    def prepare_parallel(cls, world_size: int) -> None:
        """Before jax is imported: ask for ``world_size`` host devices (``XLA_FLAGS``, backends/_jax_mesh.py)."""
        host_devices(world_size)

    @classmethod
    def parallel_env(cls, world_size: int, env: dict[str, str]) -> dict[str, str]:
        """The environment an isolated worker needs for ``world_size`` host devices (read when jax is imported)."""
        return {"XLA_FLAGS": xla_flags(world_size, env.get("XLA_FLAGS", ""))}

    def setup_parallel(self, world_size: int) -> None:
        """Lay the mesh out over this platform's first ``world_size`` devices; arrays are replicated on it (memory
        figures stay those of the first device)."""
        self._mesh = Mesh(self.jax, self.jax.devices(self._dev.platform), world_size)
        self.world_size = world_size

    def shard_batch(self, extra):
        return super().shard_batch(extra) if self._mesh is None else self._mesh.shard(self, extra)

