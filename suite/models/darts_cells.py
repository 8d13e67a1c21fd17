"""A DARTS cell search space (Liu et al., ICLR 2019), written once against the ops protocol.

Macro network: a 3×3 stem convolution (``in_channels`` → C) and batch norm, optionally an average pool
(``stem_pool``), then ``cells`` normal cells, global average pooling and a linear classifier. Cell k takes the outputs
of the two cells before it (s0, s1; the stem's for the first ones), maps each to C channels (ReLU → 1×1 conv → BN),
and computes ``nodes`` intermediate nodes; node j sums one operation per earlier state (the 2 inputs and nodes < j),
and the cell's output is the concatenation of its nodes (nodes·C channels). Every cell shares one α of shape
(edges, primitives), ``edges = Σ_j (2 + j)``.

Supernet (search): each edge is a *mixed* operation, ``Σ_k softmax(α_e)_k · o_k(x)`` over the primitives (``none``
outputs zeros: it only takes weight in the softmax). Derived network (retraining): each node keeps its two strongest
incoming edges, each with its strongest non-``none`` operation (:func:`derive`, DARTS's ``genotype()``).

Primitives (stride 1, C → C): ``none``, ``skip_connect``, ``max_pool_3x3`` and ``avg_pool_3x3`` (padding 1, in-bounds
averages; followed by BN as in DARTS's MixedOp), ``sep_conv_3x3`` / ``sep_conv_5x5`` (ReLU → depthwise k×k → 1×1 → BN,
once: DARTS stacks it twice, which doubles the cost on CPU for no change in the search's mechanics),
``dil_conv_3x3`` / ``dil_conv_5x5`` (ReLU → depthwise k×k dilated 2 → 1×1 → BN) and ``conv_3x3`` (ReLU → 3×3 → BN).
Batch norm has no affine parameters (DARTS's search setting) and always uses the batch's statistics (pure functions:
no running averages), so evaluation runs on large, class-mixed batches. Reduction cells, auxiliary heads, drop-path
and cutout of DARTS's retraining are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlo_bench.suite.models.nn import normalise

Params = dict[str, np.ndarray]
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5", "conv_3x3")
#: DARTS's eight primitives (its ``PRIMITIVES`` list, in its order)
DARTS_PRIMITIVES = PRIMITIVES[:8]
_CONVS = {"sep_conv_3x3": (3, 1, True), "sep_conv_5x5": (5, 1, True), "dil_conv_3x3": (3, 2, True),
          "dil_conv_5x5": (5, 2, True), "conv_3x3": (3, 1, False)}  # kernel, dilation, depthwise-separable


def bn(ops: Any, x: Any) -> Any:
    """Batch norm of NCHW ``x`` without affine parameters, with the batch's statistics (biased variance;
    synchronised across data-parallel ranks: :func:`mlo_bench.suite.models.nn.normalise`)."""
    return normalise(ops, x)


def _uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return rng.uniform(-1.0, 1.0, size=shape) / np.sqrt(fan_in)  # torch's conv default bound, 1/√fan_in


def op_params(rng: np.random.Generator, prim: str, c: int, prefix: str) -> Params:
    if prim not in _CONVS:
        return {}
    k, _, separable = _CONVS[prim]
    if separable:
        return {f"{prefix}_dw": _uniform(rng, (c, 1, k, k)), f"{prefix}_pw": _uniform(rng, (c, c, 1, 1))}
    return {f"{prefix}_w": _uniform(rng, (c, c, k, k))}


def op_apply(ops: Any, prim: str, p: dict[str, Any], prefix: str, x: Any) -> Any:
    if prim == "skip_connect":
        return x
    if prim == "max_pool_3x3":
        return bn(ops, ops.max_pool2d(x, 3, 1, 1))
    if prim == "avg_pool_3x3":
        return bn(ops, ops.avg_pool2d(x, 3, 1, 1))
    k, dil, separable = _CONVS[prim]
    pad = dil * (k // 2)
    if separable:
        h = ops.conv2d(ops.relu(x), p[f"{prefix}_dw"], padding=pad, dilation=dil, groups=x.shape[1])
        return bn(ops, ops.conv2d(h, p[f"{prefix}_pw"]))
    return bn(ops, ops.conv2d(ops.relu(x), p[f"{prefix}_w"], padding=pad))


@dataclass(frozen=True)
class Genotype:
    """A derived cell: per node, two ``(primitive, input)`` pairs (inputs 0, 1 are the cell's inputs, 2 + j node j)."""

    normal: tuple[tuple[str, int], ...]
    nodes: int

    def __str__(self) -> str:  # DARTS's own text form (``genotypes.py``), without the reduction cell
        edges = ", ".join(f"('{op}', {i})" for op, i in self.normal)
        return f"Genotype(normal=[{edges}], normal_concat={list(range(2, 2 + self.nodes))})"

    def share(self, prim: str) -> float:
        return sum(op == prim for op, _ in self.normal) / len(self.normal)


@dataclass(frozen=True)
class SearchSpace:
    in_channels: int
    n_classes: int
    channels: int = 8
    cells: int = 2
    nodes: int = 3
    primitives: tuple[str, ...] = DARTS_PRIMITIVES
    stem_pool: int = 1

    def __post_init__(self) -> None:
        bad = [p for p in self.primitives if p not in PRIMITIVES]
        if bad or not [p for p in self.primitives if p != "none"] or len(set(self.primitives)) != len(self.primitives):
            raise ValueError(f"primitives must be distinct, among {', '.join(PRIMITIVES)}, and not only none "
                             f"(got {list(self.primitives)})")

    @property
    def edges(self) -> list[tuple[int, int]]:
        """``(node, input)`` per edge, in α's row order."""
        return [(j, i) for j in range(self.nodes) for i in range(2 + j)]

    def alpha_shape(self) -> tuple[int, int]:
        return len(self.edges), len(self.primitives)

    # ---- the macro network, shared by the supernet and the derived network ------------------------------------
    def _init(self, rng: np.random.Generator, edge_prims: list[list[tuple[int, str]]]) -> Params:
        """Weights with ``edge_prims[e]`` = the (primitive index, name) pairs edge e carries (skipped edges: [])."""
        c, out = self.channels, {}
        out["stem_w"] = _uniform(rng, (c, self.in_channels, 3, 3))
        c_pp, c_p = c, c
        for k in range(self.cells):
            out[f"c{k}_pre0"] = _uniform(rng, (c, c_pp, 1, 1))
            out[f"c{k}_pre1"] = _uniform(rng, (c, c_p, 1, 1))
            for e, prims in enumerate(edge_prims):
                for idx, prim in prims:
                    out.update(op_params(rng, prim, c, f"c{k}_e{e}_o{idx}"))
            c_pp, c_p = c_p, self.nodes * c
        out["fc_w"] = rng.uniform(-1, 1, (c_p, self.n_classes)) / np.sqrt(c_p)
        out["fc_b"] = rng.uniform(-1, 1, (self.n_classes,)) / np.sqrt(c_p)
        return out

    def _apply(self, ops: Any, p: dict[str, Any], x: Any, edge_fn: Any) -> Any:
        s = bn(ops, ops.conv2d(x, p["stem_w"], padding=1))
        if self.stem_pool > 1:
            s = ops.avg_pool2d(s, self.stem_pool)
        s0 = s1 = s
        for k in range(self.cells):
            states = [bn(ops, ops.conv2d(ops.relu(s0), p[f"c{k}_pre0"])),
                      bn(ops, ops.conv2d(ops.relu(s1), p[f"c{k}_pre1"]))]
            for j in range(self.nodes):
                terms = [edge_fn(k, e, states[i]) for e, (node, i) in enumerate(self.edges) if node == j]
                terms = [t for t in terms if t is not None]
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                states.append(total)
            s0, s1 = s1, ops.concatenate(states[2:], axis=1)
        return ops.matmul(ops.mean(s1, axis=(2, 3)), p["fc_w"]) + p["fc_b"]

    # ---- supernet ---------------------------------------------------------------------------------------------
    def init_supernet(self, rng: np.random.Generator) -> Params:
        every = [(i, p) for i, p in enumerate(self.primitives) if p != "none"]
        return self._init(rng, [every for _ in self.edges])

    def init_alpha(self, rng: np.random.Generator) -> np.ndarray:
        return 1e-3 * rng.standard_normal(self.alpha_shape())  # DARTS: 1e-3 · N(0, 1)

    def supernet(self, ops: Any, w: dict[str, Any], alpha: Any, x: Any) -> Any:
        weights = ops.softmax(alpha, axis=-1)

        def mixed(k: int, e: int, h: Any) -> Any:
            out = None
            for idx, prim in enumerate(self.primitives):
                if prim == "none":
                    continue
                term = weights[e, idx] * op_apply(ops, prim, w, f"c{k}_e{e}_o{idx}", h)
                out = term if out is None else out + term
            return out

        return self._apply(ops, w, x, mixed)

    # ---- derivation and the derived network -------------------------------------------------------------------
    def derive(self, alpha: np.ndarray) -> Genotype:
        """DARTS's ``genotype()``: per node the two incoming edges whose strongest non-``none`` weight is largest,
        each with that operation (ties: the earlier edge / primitive)."""
        w = np.exp(alpha - alpha.max(axis=1, keepdims=True))
        w = w / w.sum(axis=1, keepdims=True)
        keep = np.array([p != "none" for p in self.primitives])
        chosen: list[tuple[str, int]] = []
        for j in range(self.nodes):
            rows = [(e, i) for e, (node, i) in enumerate(self.edges) if node == j]
            strength = [w[e][keep].max() for e, _ in rows]
            best = sorted(range(len(rows)), key=lambda r: -strength[r])[:2]
            for r in sorted(best, key=lambda r: rows[r][1]):
                e, i = rows[r]
                prim = int(np.flatnonzero(keep)[np.argmax(w[e][keep])])
                chosen.append((self.primitives[prim], i))
        return Genotype(tuple(chosen), self.nodes)

    def zero_share(self, alpha: np.ndarray) -> float:
        """Share of edges whose largest weight is ``none``'s (0 when ``none`` is not a primitive)."""
        if "none" not in self.primitives:
            return 0.0
        return float(np.mean(np.argmax(alpha, axis=1) == self.primitives.index("none")))

    def _derived_edges(self, g: Genotype) -> list[list[tuple[int, str]]]:
        out: list[list[tuple[int, str]]] = [[] for _ in self.edges]
        for n, (prim, i) in enumerate(g.normal):
            e = self.edges.index((n // 2, i))
            out[e].append((self.primitives.index(prim), prim))
        return out

    def init_derived(self, rng: np.random.Generator, g: Genotype) -> Params:
        return self._init(rng, self._derived_edges(g))

    def derived(self, g: Genotype) -> Any:
        """``apply(ops, params, x) -> logits`` of the derived network."""
        per_edge = self._derived_edges(g)

        def apply(ops: Any, p: dict[str, Any], x: Any) -> Any:
            def edge(k: int, e: int, h: Any) -> Any:
                out = None
                for idx, prim in per_edge[e]:
                    term = op_apply(ops, prim, p, f"c{k}_e{e}_o{idx}", h)
                    out = term if out is None else out + term
                return out

            return self._apply(ops, p, x, edge)

        return apply
