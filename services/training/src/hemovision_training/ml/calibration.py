"""Temperature scaling, expected calibration error, needs-review and OOD thresholds (NumPy only)."""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """T > 0 minimising the NLL of softmax(logits / T) (grid over log T, then golden section)."""
    labels = np.asarray(labels, np.int64)
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 200))
    losses = [nll(logits, labels, t) for t in grid]
    i = int(np.argmin(losses))
    a, b = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(60):
        if nll(logits, labels, np.exp(c)) < nll(logits, labels, np.exp(d)):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return float(np.exp((a + b) / 2))


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15):
    """Per-bin (confidence, accuracy, count) over equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        out.append((float(conf[m].mean()) if m.any() else float("nan"),
                    float(correct[m].mean()) if m.any() else float("nan"), int(m.sum())))
    return edges, out


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error (top-label, equal-width bins), as a fraction."""
    _, bins = reliability(probs, labels, n_bins)
    n = len(labels)
    return float(sum(cnt / n * abs(acc - conf) for conf, acc, cnt in bins if cnt))


def review_threshold(probs: np.ndarray, labels: np.ndarray, target_accuracy: float = 0.995) -> float:
    """Smallest confidence threshold t such that the cells with confidence >= t reach
    ``target_accuracy`` (the largest-coverage prefix of the confidence ranking that does)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    cum_acc = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(cum_acc >= target_accuracy)[0]
    if len(ok) == 0:
        return 1.0
    k = int(ok.max())
    # all ties with the k-th confidence are accepted too; step down while still meeting target
    return float(conf[order[k]])


def coverage_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy of accepted) for confidence >= threshold."""
    conf = probs.max(axis=1)
    m = conf >= threshold
    cov = float(m.mean()) if len(m) else 0.0
    acc = float((probs.argmax(1)[m] == labels[m]).mean()) if m.any() else float("nan")
    return cov, acc


def coverage_curve(probs: np.ndarray, labels: np.ndarray, points: int = 101):
    """Accuracy of the most-confident fraction c of cells, for c in (0,1]."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    cum = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    cov = np.linspace(0.01, 1.0, points)
    k = np.clip(np.ceil(cov * len(order)).astype(int) - 1, 0, len(order) - 1)
    return cov, cum[k]


def energy_score(logits: np.ndarray) -> np.ndarray:
    """OOD score: negative free energy -logsumexp(logits); higher = less like the training data."""
    z = np.asarray(logits, np.float64)
    m = z.max(axis=1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


def ood_threshold(val_logits: np.ndarray, percentile: float = 99.0) -> float:
    return float(np.percentile(energy_score(val_logits), percentile))
