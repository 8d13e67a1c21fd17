"""Label models: turn labeling-function votes into labels. numpy only, deterministic (identical on every backend).

Votes are an int array (n, m): ``votes[i, l]`` is LF l's class for example i, or ``-1`` (abstain). Every model returns
``probs`` (n, K), a label distribution per example; :func:`predict` takes its argmax.

- :func:`majority_vote` — the fraction of non-abstaining votes each class got; an uncovered example (every LF
  abstains) gets the uniform distribution. **Ties** (two classes with the most votes, and uncovered examples) go to
  the *lowest* class index (``np.argmax``'s first maximum) — deterministic, and documented because it biases ties
  toward class 0.
- :func:`dawid_skene` — the generative label model of Dawid & Skene (1979), fitted by EM: a class prior π and, per LF,
  a confusion matrix θ_l[c, j] = P(LF l's output is j | y = c) over K + 1 outputs, *abstain* being one of them (as
  in snorkel's model: an LF that only ever votes one class — most real LFs — is informative only through when it
  abstains; treating abstains as missing data makes such LFs carry no evidence and EM collapses). Initialised from
  the majority-vote posteriors (so classes keep their names: no label switching when the LFs are better than
  chance), M-step with add-``smoothing`` counts, stopped when the posteriors move by less than ``tol`` (max abs) or
  after ``max_iter`` iterations. Each LF's estimated accuracy on the examples it votes on is
  Σ_c P(y = c, l votes) θ_l[c, c] / P(l votes) (``DawidSkene.lf_accuracy``). Tested on votes drawn from known LF
  accuracies (tests/test_weak_supervision.py). Fit on the embedded problem: ~0.2 s (145 iterations).

Why not snorkel's ``LabelModel``: snorkel 0.10 does not pin torch, but pulls tensorboard, protobuf, networkx and
munkres into the project's stack and fits by torch SGD with its own seeding; Dawid–Skene EM is ~40 lines of numpy,
deterministic, with no new dependency, and its answer on a known case is tested here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_MODELS = ("majority_vote", "dawid_skene")


def _one_hot_votes(votes: np.ndarray, k: int, abstain: bool = False) -> np.ndarray:
    """(n, m, K) one-hot of the votes, all zeros where the LF abstains; ``abstain``: (n, m, K + 1), abstain = K."""
    out = np.zeros((*votes.shape, k + int(abstain)))
    keep = votes >= 0 if not abstain else np.ones(votes.shape, dtype=bool)
    n_idx, l_idx = np.nonzero(keep)
    out[n_idx, l_idx, np.where(votes[n_idx, l_idx] >= 0, votes[n_idx, l_idx], k)] = 1.0
    return out


def majority_vote(votes: np.ndarray, k: int) -> np.ndarray:
    counts = _one_hot_votes(votes, k).sum(axis=1)
    total = counts.sum(axis=1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1), 1.0 / k)


def predict(probs: np.ndarray) -> np.ndarray:
    """argmax, ties to the lowest class index."""
    return np.argmax(probs, axis=1).astype(np.int64)


@dataclass(frozen=True)
class DawidSkene:
    prior: np.ndarray  # (K,)
    confusion: np.ndarray  # (m, K, K + 1): confusion[l, c, j] = P(LF l's vote is j | y = c), j = K: abstain
    iterations: int

    @property
    def lf_accuracy(self) -> np.ndarray:
        k = len(self.prior)
        cond = self.confusion[:, :, :k] / self.confusion[:, :, :k].sum(axis=2, keepdims=True)  # given it votes
        joint = self.prior[None, :] * (1.0 - self.confusion[:, :, k])  # P(y = c, l votes)
        return np.einsum("lc,lcc->l", joint, cond) / joint.sum(axis=1)

    def posterior(self, votes: np.ndarray) -> np.ndarray:
        m, k, j = self.confusion.shape
        return self._posterior(_one_hot_votes(votes, k, abstain=True).reshape(len(votes), m * j))

    def _posterior(self, flat: np.ndarray) -> np.ndarray:
        m, k, j = self.confusion.shape  # as one matmul: (n, m·j) @ (m·j, K)
        log_conf = np.log(self.confusion).transpose(0, 2, 1).reshape(m * j, k)
        log_post = np.log(self.prior)[None, :] + flat @ log_conf
        log_post -= log_post.max(axis=1, keepdims=True)
        post = np.exp(log_post)
        return post / post.sum(axis=1, keepdims=True)


def fit_dawid_skene(votes: np.ndarray, k: int, max_iter: int = 200, tol: float = 1e-5,
                    smoothing: float = 0.01) -> DawidSkene:
    onehot = _one_hot_votes(votes, k, abstain=True)
    m = votes.shape[1]
    flat = onehot.reshape(len(votes), m * (k + 1))
    model = DawidSkene(np.full(k, 1.0 / k), np.full((votes.shape[1], k, k + 1), 1.0 / (k + 1)), 0)
    post = majority_vote(votes, k)
    for it in range(1, max_iter + 1):
        prior = (post.sum(axis=0) + smoothing) / (len(post) + k * smoothing)
        counts = (post.T @ flat).reshape(k, m, k + 1).transpose(1, 0, 2) + smoothing
        model = DawidSkene(prior, counts / counts.sum(axis=2, keepdims=True), it)
        new = model._posterior(flat)
        moved = float(np.abs(new - post).max()) if len(post) else 0.0
        post = new
        if moved < tol:
            break
    return model


def dawid_skene(votes: np.ndarray, k: int, fit_votes: np.ndarray | None = None) -> np.ndarray:
    """Posteriors of ``votes`` under the model fitted on ``fit_votes`` (default: ``votes``)."""
    return fit_dawid_skene(votes if fit_votes is None else fit_votes, k).posterior(votes)
