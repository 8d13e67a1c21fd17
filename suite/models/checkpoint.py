"""A local BERT checkpoint read into the transformer's parameter names (issue #29 part 1). Nothing is downloaded:
the file is one the user already has (HuggingFace's ``pytorch_model.bin`` of ``bert-base-uncased``, or a
conversion of it).

Formats, by suffix: ``.bin`` / ``.pt`` / ``.pth`` — a ``torch.save``'d state dict, read with ``torch.load(...,
weights_only=True)`` (no code in the file runs); ``.npz`` — the same key names as arrays; ``.safetensors`` — when
the ``safetensors`` package is importable (else a one-line error saying to install it). Keys are HuggingFace's
``BertModel`` / ``BertForSequenceClassification`` names, with or without the leading ``bert.`` (``LayerNorm.gamma``
/ ``.beta`` of TF-converted checkpoints read as ``.weight`` / ``.bias``); other keys (``cls.predictions.*``,
``position_ids``) are ignored. Every array comes back float32.

The mapping (HF linear weights are ``(out, in)``; ours ``(in, out)``, so every linear weight is transposed):

======================================================  ===============================
``embeddings.word_embeddings.weight``                   ``tok_emb`` (V, d)
``embeddings.position_embeddings.weight`` + type row 0  ``pos_emb`` (max_len, d)
``embeddings.LayerNorm.{weight,bias}``                  ``emb_ln_g``, ``emb_ln_b``
``encoder.layer.{i}.attention.self.{query,key,value}``  ``L{i}_{q,k,v}_w``, ``L{i}_{q,v}_b``
``encoder.layer.{i}.attention.output.dense``            ``L{i}_o_{w,b}``
``encoder.layer.{i}.attention.output.LayerNorm``        ``L{i}_ln1_{g,b}``
``encoder.layer.{i}.intermediate.dense``                ``L{i}_ff1_{w,b}`` (d, ff)
``encoder.layer.{i}.output.dense``                      ``L{i}_ff2_{w,b}`` (ff, d)
``encoder.layer.{i}.output.LayerNorm``                  ``L{i}_ln2_{g,b}``
``pooler.dense``                                        ``pool_w``, ``pool_b``
``classifier`` (only in a fine-tuned checkpoint)        ``fc_w`` (d, C), ``fc_b``
======================================================  ===============================

The key projection's bias is not read: it adds one vector to every key, which shifts all of a query's scores by the
same amount, and softmax ignores that — the bias changes no output (and its gradient is exactly zero), so the
transformer has none. ``token_type_embeddings[0]`` is folded into ``pos_emb``: the transformer has no segment ids,
every token is of type 0, and BERT adds word + position + type embeddings before the LayerNorm, so ``pos_emb +
type[0]`` is exact.
Attention heads need no remapping: HF's head ``h`` uses output columns ``h·d/H … (h+1)·d/H`` of query / key /
value, the usual contiguous split. The classifier head is not part of a pretrained BERT and is left out (the caller
keeps its own initialisation) unless the file has ``classifier.*``; a checkpoint without a pooler (``BertForMaskedLM``)
leaves ``pool_*`` out the same way. Layers past ``n_layers`` are not read (the first ``n_layers`` of a deeper model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

TORCH_SUFFIXES = (".bin", ".pt", ".pth")
#: ours → (HF name under ``encoder.layer.{i}.``, transpose, HF shape: d = hidden, f = intermediate size)
LAYER_MAP = {
    "q_w": ("attention.self.query.weight", True, "dd"), "q_b": ("attention.self.query.bias", False, "d"),
    "k_w": ("attention.self.key.weight", True, "dd"),  # key.bias: not read (no effect on the output, see above)
    "v_w": ("attention.self.value.weight", True, "dd"), "v_b": ("attention.self.value.bias", False, "d"),
    "o_w": ("attention.output.dense.weight", True, "dd"), "o_b": ("attention.output.dense.bias", False, "d"),
    "ln1_g": ("attention.output.LayerNorm.weight", False, "d"),
    "ln1_b": ("attention.output.LayerNorm.bias", False, "d"),
    "ff1_w": ("intermediate.dense.weight", True, "fd"), "ff1_b": ("intermediate.dense.bias", False, "f"),
    "ff2_w": ("output.dense.weight", True, "df"), "ff2_b": ("output.dense.bias", False, "d"),
    "ln2_g": ("output.LayerNorm.weight", False, "d"), "ln2_b": ("output.LayerNorm.bias", False, "d"),
}
#: parameters a checkpoint may lack (the caller keeps its own initialisation)
OPTIONAL = ("pool_w", "pool_b", "fc_w", "fc_b")


def read_state(path: str) -> dict[str, np.ndarray]:
    """The file's arrays by key, float32, as stored (no renaming); one-line errors naming the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"no such checkpoint file {p}")
    suffix = p.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return _read_torch(p)
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: not a readable .npz archive ({_first_line(exc)})") from None
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ValueError(f"{p}: reading .safetensors needs the safetensors package (pip install safetensors); "
                             "or convert the file to .npz or pytorch_model.bin") from None
        try:
            return {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(p)).items()}
        except Exception as exc:  # noqa: BLE001 — the package's own errors vary by version
            raise ValueError(f"{p}: not a readable .safetensors file ({_first_line(exc)})") from None
    raise ValueError(f"{p}: unknown checkpoint format {suffix or '(no suffix)'!r}; expected one of "
                     f"{', '.join(TORCH_SUFFIXES)}, .npz, .safetensors")


def _read_torch(p: Path) -> dict[str, np.ndarray]:
    import torch

    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — pickle, zip and torch's own errors all mean "not a state dict"
        raise ValueError(f"{p}: not a readable torch checkpoint ({_first_line(exc)})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{p}: holds a {type(state).__name__}, expected a state dict of tensors")
    return {k: v.detach().to(torch.float32).cpu().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _normalise(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keys without ``bert.``, with ``LayerNorm.gamma/beta`` as ``.weight/.bias``; ``bert.``-prefixed keys win."""
    out: dict[str, np.ndarray] = {}
    for key in sorted(state, key=lambda k: k.startswith("bert.")):
        name = key[len("bert."):] if key.startswith("bert.") else key
        if ".LayerNorm." in name:
            name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[name] = state[key]
    return out


def load_bert_checkpoint(path: str, n_layers: int, expected: Mapping[str, tuple[int, ...]] | None = None
                         ) -> dict[str, np.ndarray]:
    """Our parameters from a BERT checkpoint (see the module docstring): a dict of float32 arrays named as the
    transformer's. Every key read is checked against the sizes the checkpoint itself implies (``V, d`` from the word
    embeddings, ``ff`` from layer 0's intermediate layer). ``expected`` — the model's own shapes by our names —
    checks them too: a shorter ``pos_emb`` takes the checkpoint's first rows (exact: positions are absolute), and a
    parameter of the model with no counterpart (beyond ``pool_*`` / ``fc_*``) or a counterpart the model lacks is an
    error. Errors are one line naming the key and the shapes."""
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1 (got {n_layers!r})")
    src = str(Path(path).expanduser())
    state = _normalise(read_state(path))

    def get(name: str, shape: tuple[int, ...] | None = None, why: str = "") -> np.ndarray:
        if name not in state:
            hint = f" (the checkpoint has {_layers(state)} encoder layers; n_layers = {n_layers})" \
                if name.startswith("encoder.layer.") else ""
            raise ValueError(f"{src}: no key {name!r} (nor 'bert.{name}'){hint}")
        arr = state[name]
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{src}: {name!r} has shape {arr.shape}, expected {shape}{why}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{src}: {name!r} has non-finite values")
        return arr

    word = get("embeddings.word_embeddings.weight")
    if word.ndim != 2:
        raise ValueError(f"{src}: 'embeddings.word_embeddings.weight' has shape {word.shape}, expected (V, d)")
    _, d = word.shape
    dd = f" (d = {d} from the word embeddings)"
    pos = get("embeddings.position_embeddings.weight")
    if pos.ndim != 2 or pos.shape[1] != d:
        raise ValueError(f"{src}: 'embeddings.position_embeddings.weight' has shape {pos.shape}, expected "
                         f"(max_len, {d}){dd}")
    types = get("embeddings.token_type_embeddings.weight")
    if types.ndim != 2 or types.shape[1] != d:
        raise ValueError(f"{src}: 'embeddings.token_type_embeddings.weight' has shape {types.shape}, expected "
                         f"(type_vocab, {d}){dd}")
    out: dict[str, np.ndarray] = {
        "tok_emb": word, "pos_emb": pos + types[0],
        "emb_ln_g": get("embeddings.LayerNorm.weight", (d,), dd),
        "emb_ln_b": get("embeddings.LayerNorm.bias", (d,), dd),
    }
    inter = get("encoder.layer.0.intermediate.dense.weight")
    if inter.ndim != 2 or inter.shape[1] != d:
        raise ValueError(f"{src}: 'encoder.layer.0.intermediate.dense.weight' has shape {inter.shape}, expected "
                         f"(ff, {d}){dd}")
    ff = inter.shape[0]
    why = f" (d = {d} from the word embeddings, ff = {ff} from layer 0)"
    size = {"d": d, "f": ff}
    for i in range(n_layers):
        for ours, (suffix, transpose, kind) in LAYER_MAP.items():
            arr = get(f"encoder.layer.{i}.{suffix}", tuple(size[c] for c in kind), why)
            out[f"L{i}_{ours}"] = arr.T if transpose else arr
    if "pooler.dense.weight" in state:
        out["pool_w"] = get("pooler.dense.weight", (d, d), dd).T
        out["pool_b"] = get("pooler.dense.bias", (d,), dd)
    if "classifier.weight" in state:
        cls_w = get("classifier.weight")
        if cls_w.ndim != 2 or cls_w.shape[1] != d:
            raise ValueError(f"{src}: 'classifier.weight' has shape {cls_w.shape}, expected (C, {d}){dd}")
        out["fc_w"] = cls_w.T
        out["fc_b"] = get("classifier.bias", (cls_w.shape[0],), f" (C = {cls_w.shape[0]} from classifier.weight)")
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    return _match(out, expected, src) if expected is not None else out


def _layers(state: Mapping[str, np.ndarray]) -> int:
    found = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.") and k.split(".")[2].isdigit()}
    return max(found) + 1 if found else 0


def _match(params: dict[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], src: str
           ) -> dict[str, np.ndarray]:
    """``params`` checked against the model's shapes (see :func:`load_bert_checkpoint`)."""
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ValueError(f"{src}: checkpoint parameter {extra[0]} {params[extra[0]].shape} is not a parameter of the "
                         f"model ({len(extra)} such; n_layers too small in the model, or no pooler?)")
    missing = sorted(k for k in set(expected) - set(params) if k not in OPTIONAL)
    if missing:
        raise ValueError(f"{src}: the model's parameter {missing[0]} {tuple(expected[missing[0]])} has no "
                         f"counterpart in the checkpoint ({len(missing)} such)")
    for key, arr in params.items():
        want = tuple(expected[key])
        if key == "pos_emb" and len(want) == 2 and want[1] == arr.shape[1] and want[0] < arr.shape[0]:
            params[key] = np.ascontiguousarray(arr[: want[0]])
        elif arr.shape != want:
            raise ValueError(f"{src}: {key} is {arr.shape} in the checkpoint, {want} in the model")
    return params
