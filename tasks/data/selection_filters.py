"""The data-selection baselines' scorers (Grangier et al. 2024's ``classifier`` and ``cds`` rows), fitted in numpy
when the task is built, so every backend filters the same pool. Both score every generic sequence; the task keeps the
top fraction.

- :func:`classifier_scores` — a specific-vs-generic linear classifier: ridge regression of ±1 labels (classes
  balanced by weight) on standardised features (byte unigram frequencies + byte bigrams hashed into ``buckets``);
  closed form, one (F × F) solve.
- :func:`bigram_cds_scores` — contrastive data selection (Moore & Lewis 2010; Grangier et al.'s CDS compares a
  specific-tuned and a generic LM): mean log p_specific − mean log p_generic per sequence under two byte-bigram
  models with add-α smoothing, the specific one fitted on the specific set, the generic one on the pool.
"""

from __future__ import annotations

import numpy as np


def _features(seqs: np.ndarray, buckets: int) -> np.ndarray:
    n, length = seqs.shape
    uni = np.zeros((n, 256))
    np.add.at(uni, (np.repeat(np.arange(n), length), seqs.ravel()), 1.0)
    h = (seqs[:, :-1] * 257 + seqs[:, 1:] * 31) % buckets
    bi = np.zeros((n, buckets))
    np.add.at(bi, (np.repeat(np.arange(n), length - 1), h.ravel()), 1.0)
    return np.concatenate([uni / length, bi / (length - 1)], axis=1)


def classifier_scores(gen: np.ndarray, spec: np.ndarray, seed: int, buckets: int = 512, ridge: float = 1.0,
                      negatives: int = 4000) -> np.ndarray:
    rng = np.random.default_rng([seed, 0xC1F])
    neg = gen[rng.choice(len(gen), min(negatives, len(gen)), replace=False)]
    x = _features(np.concatenate([spec, neg]), buckets)
    y = np.concatenate([np.ones(len(spec)), -np.ones(len(neg))])
    w = np.where(y > 0, 0.5 / len(spec), 0.5 / len(neg))
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = np.concatenate([(x - mu) / sd, np.ones((len(x), 1))], axis=1)
    a = (z * w[:, None]).T @ z + ridge / len(x) * np.eye(z.shape[1])
    beta = np.linalg.solve(a, (z * w[:, None]).T @ y)
    out = np.empty(len(gen))
    for start in range(0, len(gen), 4096):
        part = (_features(gen[start:start + 4096], buckets) - mu) / sd
        out[start:start + 4096] = part @ beta[:-1] + beta[-1]
    return out


def _bigram_logp(seqs: np.ndarray, alpha: float) -> np.ndarray:
    counts = np.zeros((256, 256))
    np.add.at(counts, (seqs[:, :-1].ravel(), seqs[:, 1:].ravel()), 1.0)
    return np.log((counts + alpha) / (counts.sum(1, keepdims=True) + 256 * alpha))


def bigram_cds_scores(gen: np.ndarray, spec: np.ndarray, seed: int, alpha: float = 0.1) -> np.ndarray:
    del seed  # deterministic: counts only
    spec_lp, gen_lp = _bigram_logp(spec, alpha), _bigram_logp(gen, alpha)
    a, b = gen[:, :-1], gen[:, 1:]
    return (spec_lp[a, b] - gen_lp[a, b]).mean(1)
