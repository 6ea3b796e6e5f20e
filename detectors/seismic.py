"""SEISMIC (Zhao, Erdogdu, He, Rajaraman, Leskovec; KDD 2015): final cascade size, no training.

Each reshare i at time t_i (the original is i = 0, at t = 0) exposes n_i followers; how soon
they reshare follows the memory kernel ``phi`` fitted on Twitter. The infectiousness p_t is
estimated from the reshares of a recent window, and the final size extrapolates the exposures
still to come. Constants and formulas as in the paper (see ``../shared/notes/detection-anchors.md``);
times in seconds since the original.
"""

from __future__ import annotations

import math

import numpy as np

C = 6.265725e-4
S0 = 300.0
THETA = 0.2314843
N_STAR = 100.0  # mean out-degree of resharers when follower counts are unknown or for the branching factor


def ccdf(s: np.ndarray) -> np.ndarray:
    """1 - Phi(s): the share of a reshare's eventual influence still to come at age s."""
    s = np.maximum(s, 0.0)
    head = 1.0 - C * s
    with np.errstate(divide="ignore"):
        tail = C * S0 ** (1 + THETA) / THETA * np.power(np.maximum(s, S0), -THETA)
    return np.where(s <= S0, head, tail)


def _int_phi(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integral of phi(u), integral of u * phi(u)) over [a, b], 0 <= a <= b, elementwise."""
    a1, b1 = np.minimum(a, S0), np.minimum(b, S0)  # the flat part, u <= s0
    i0 = C * (b1 - a1)
    j0 = C * (b1 ** 2 - a1 ** 2) / 2
    a2, b2 = np.maximum(a, S0), np.maximum(b, S0)  # the power-law part, u > s0
    k = C * S0 ** (1 + THETA)
    i1 = k / THETA * (np.power(a2, -THETA) - np.power(b2, -THETA))
    j1 = k / (1 - THETA) * (np.power(b2, 1 - THETA) - np.power(a2, 1 - THETA))
    return i0 + i1, j0 + j1


def infectiousness(times: np.ndarray, followers: np.ndarray, t: float) -> float:
    """p_t from the reshares of the window before ``t`` (triangular kernel, width clamp(t/2, 5 min, 2 h))."""
    seen = times <= t
    times, followers = times[seen], followers[seen]
    w = min(max(t / 2, 300.0), 7200.0)
    if len(times) >= 5:  # widen to hold at least five reshares
        w = max(w, t - np.sort(times)[-5])
    lo = t - w
    in_window = times >= lo
    reshares = float(np.sum(1.0 - (t - times[in_window]) / w))
    a = np.maximum(lo - times, 0.0)
    b = t - times
    i_phi, j_phi = _int_phi(a, b)
    exposure = float(np.sum(followers * (i_phi * (1 - b / w) + j_phi / w)))
    return reshares / exposure if exposure > 0 else 0.0


def predict(times: np.ndarray, followers: np.ndarray, t: float, n_star: float = N_STAR) -> float:
    """Forecast of the final number of reshares (the original included), or ``inf`` if supercritical."""
    times = np.asarray(times, dtype=float)
    followers = np.asarray(followers, dtype=float)
    seen = times <= t
    p = infectiousness(times, followers, t)
    if p * n_star >= 1:
        return math.inf
    future = float(np.sum(followers[seen] * ccdf(t - times[seen])))
    return float(np.count_nonzero(seen)) + p * future / (1 - p * n_star)
