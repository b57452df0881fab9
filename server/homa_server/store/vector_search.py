"""Exact nearest-neighbour search in numpy (no index): every candidate vector is scored.

Scores are "higher is more similar" for every metric: cosine similarity, dot product, or the
negated Euclidean distance. Ties are broken by document id (ascending), so the same data gives the
same ranking on every engine and every run.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2

__all__ = ["rank", "scores"]

_F32 = npt.NDArray[np.float32]


def scores(matrix: _F32, query: _F32, metric: int) -> npt.NDArray[np.float64]:
    """The score of each row of `matrix` ([n, d]) against `query` ([d]) under `metric`
    (a DistanceMetric value; UNSPECIFIED means cosine). Zero vectors score 0 under cosine."""
    if matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    m = matrix.astype(np.float64)
    q = query.astype(np.float64)
    if metric == embedding_pb2.DISTANCE_METRIC_DOT_PRODUCT:
        result: npt.NDArray[np.float64] = m @ q
        return result
    if metric == embedding_pb2.DISTANCE_METRIC_EUCLIDEAN:
        distance: npt.NDArray[np.float64] = np.linalg.norm(m - q, axis=1)
        return -distance
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
    dots = m @ q
    cosine: npt.NDArray[np.float64] = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return cosine


def rank(ids: list[str], values: npt.NDArray[np.float64], top_k: int, threshold: float | None) -> list[int]:
    """Positions of the best `top_k` scores with score >= `threshold`, best first (ties by id)."""
    keep = np.arange(values.shape[0])
    if threshold is not None:
        keep = keep[values >= threshold]
    if keep.shape[0] > top_k:
        kth = np.partition(values[keep], keep.shape[0] - top_k)[keep.shape[0] - top_k]
        keep = keep[values[keep] >= kth]  # every candidate tied with the k-th stays, then sorted
    ordered = sorted(keep.tolist(), key=lambda i: (-values[i], ids[i]))
    return ordered[:top_k]
