"""Figures logged with each evaluated ranker (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.models import LAMBDARANK, Ranker


def ndcg_bars(report: dict, title: str):
    names = list(report["rankers"])
    values = [report["rankers"][n]["ndcg10"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, values, color=["#3b6ea5" if n not in ("oracle",) else "#999999" for n in names])
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.set_ylabel("NDCG@10")
    ax.set_ylim(0, 1.1)
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def feature_importance(ranker: Ranker, top: int = 25):
    """Total gain per feature (summed over the value model's heads)."""
    gain = np.zeros(len(ranker.feature_names))
    for name, booster in ranker.boosters.items():
        g = booster.feature_importance(importance_type="gain")
        gain += g * (abs(ranker.weights.get(name, 1.0)) if name != LAMBDARANK else 1.0)
    order = np.argsort(gain)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(order) + 1))
    ax.barh([ranker.feature_names[i] for i in order], gain[order] / max(gain.sum(), 1e-12))
    ax.set_xlabel("share of total gain")
    ax.set_title(f"{ranker.kind}: feature importance")
    fig.tight_layout()
    return fig


def calibration_curves(heads_report: dict):
    fig, ax = plt.subplots(figsize=(5, 5))
    top = 0.0
    for head, m in heads_report.items():
        cal = m["calibration"]
        if cal["mean_predicted"]:
            ax.plot(cal["mean_predicted"], cal["fraction_positive"], marker="o", ms=3,
                    label=f"{head} (ECE {cal['ece']:.4f})")
            top = max(top, max(cal["mean_predicted"]), max(cal["fraction_positive"]))
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    ax.set_xlabel("mean predicted P(action)")
    ax.set_ylabel("observed rate")
    ax.set_title("calibration per head (test day)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
