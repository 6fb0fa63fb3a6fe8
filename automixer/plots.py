"""Figures of a run directory (matplotlib, no screen needed). Each function returns a Figure.

predicted_vs_actual  out-of-fold predictions against measured values, per target, with rho
signal_vs_noise      seed noise against the spread between mixtures, per target
weights_comparison   optimal vs natural vs uniform weights
response_curves      predicted objective as one domain's weight moves away from the optimum
pareto               the Pareto front over two abilities, chosen point marked
coverage             the sweep's mixtures, one strip per domain
loss_curves          the proxies' training loss curves
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from scipy.stats import spearmanr


def _grid(n: int, width: float = 3.2) -> tuple[Figure, list]:
    cols = min(4, max(1, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, width * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def predicted_vs_actual(oof: pl.DataFrame, targets: Sequence[str]) -> Figure:
    fig, axes = _grid(len(targets))
    for ax, t in zip(axes, targets, strict=False):
        d = oof.filter(pl.col("target") == t)
        a, p = d["actual"].to_numpy(), d["predicted"].to_numpy()
        rho = spearmanr(a, p).statistic if len(a) > 2 else float("nan")
        ax.scatter(a, p, s=12, alpha=0.7)
        lo, hi = float(min(a.min(), p.min())), float(max(a.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_title(f"{t}\nrho={rho:.2f} ({d['model'][0]})", fontsize=8)
        ax.set_xlabel("measured", fontsize=7)
        ax.set_ylabel("predicted (out-of-fold)", fontsize=7)
    fig.tight_layout()
    return fig


def signal_vs_noise(signal: pl.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * signal.height)))
    y = np.arange(signal.height)
    ax.barh(y - 0.2, signal["mixture_spread_sd"].to_numpy(), 0.4, label="spread across mixtures")
    ax.barh(y + 0.2, signal["seed_noise_sd"].to_numpy(), 0.4, label="seed noise")
    ax.set_yticks(y, signal["target"].to_list(), fontsize=6)
    ax.set_xlabel("standard deviation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def weights_comparison(mixes: Mapping[str, Mapping[str, float]]) -> Figure:
    domains = list(next(iter(mixes.values())))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(domains)), 3.2))
    width = 0.8 / len(mixes)
    x = np.arange(len(domains))
    for i, (name, w) in enumerate(mixes.items()):
        ax.bar(x + i * width, [w[d] for d in domains], width, label=name)
    ax.set_xticks(x + width * (len(mixes) - 1) / 2, domains, rotation=30, fontsize=8)
    ax.set_ylabel("weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def schedule_bars(columns: Mapping[str, Mapping[str, float]]) -> Figure:
    """One stacked bar per column (each phase's own mixture, the best constant mix), a segment
    per domain."""
    names = list(columns)
    domains = list(next(iter(columns.values())))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 3.4))
    bottom = np.zeros(len(names))
    for d in domains:
        h = np.array([columns[n].get(d, 0.0) for n in names])
        ax.bar(names, h, 0.6, bottom=bottom, label=d)
        bottom += h
    ax.set_ylabel("weight within the phase")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def response_curves(
    score: Callable[[np.ndarray], np.ndarray],
    optimum: np.ndarray,
    domains: Sequence[str],
    upper: np.ndarray | None = None,
) -> Figure:
    """Predicted objective as domain d's weight sweeps 0..upper_d, the others scaled
    proportionally from the optimum."""
    fig, axes = _grid(len(domains), 2.6)
    for i, (ax, d) in enumerate(zip(axes, domains, strict=False)):
        top = float(upper[i]) if upper is not None else 1.0
        grid = np.linspace(0, top, 41)
        rest = np.delete(optimum, i)
        rest = rest / rest.sum() if rest.sum() > 0 else np.full(len(rest), 1 / len(rest))
        W = np.stack([np.insert(rest * (1 - g), i, g) for g in grid])
        ax.plot(grid, score(W))
        ax.axvline(optimum[i], color="grey", ls="--", lw=0.8)
        ax.set_title(d, fontsize=8)
        ax.set_xlabel("weight", fontsize=7)
    fig.tight_layout()
    return fig


def pareto(front: pl.DataFrame, x: str, y: str) -> Figure:
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    other = front.filter(~pl.col("chosen"))
    chosen = front.filter(pl.col("chosen"))
    ax.scatter(other[x], other[y], s=14, label="Pareto front")
    ax.scatter(chosen[x], chosen[y], s=60, marker="*", color="red", label="chosen")
    ax.set_xlabel(x, fontsize=8)
    ax.set_ylabel(y, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def coverage(weights: pl.DataFrame) -> Figure:
    domains = weights.columns
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(domains)), 3.2))
    rng = np.random.default_rng(0)
    for i, d in enumerate(domains):
        v = weights[d].to_numpy()
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=10, alpha=0.7)
    ax.set_xticks(range(len(domains)), domains, rotation=30, fontsize=8)
    ax.set_ylabel("weight in the sweep's mixtures")
    fig.tight_layout()
    return fig


def loss_curves(curves: pl.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for _, d in curves.group_by(["run_id"], maintain_order=True):
        ax.plot(d["step"], d["loss"], lw=0.7, alpha=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    fig.tight_layout()
    return fig
