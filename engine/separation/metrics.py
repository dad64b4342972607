"""Separation quality measures (the signal-to-distortion ratios the MUSDB/SDX evaluations report).

    SDR    = 10 log10( sum s^2 / sum (s - s_hat)^2 )               whole signal, all channels
    SI-SDR = SDR of s_hat against its projection a*s, a = <s_hat, s> / <s, s>   (gain-invariant)

The baseline for a stem is the unprocessed mixture used as the estimate of that stem.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    s = np.asarray(reference, np.float64).ravel()
    e = np.asarray(estimate, np.float64).ravel()
    return float(10.0 * np.log10((np.dot(s, s) + EPS) / (np.dot(s - e, s - e) + EPS)))


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    s = np.asarray(reference, np.float64).ravel()
    e = np.asarray(estimate, np.float64).ravel()
    a = np.dot(e, s) / (np.dot(s, s) + EPS)
    target = a * s
    return float(10.0 * np.log10((np.dot(target, target) + EPS) / (np.dot(e - target, e - target) + EPS)))
