"""The report's plots: matplotlib figures rendered to inline SVG strings (no browser at build time).

Each function takes the JSON-able numbers of :mod:`recsys.evaluation.analysis` and returns one
``<svg>`` element, sized by its viewBox so it scales to the page. Figures are built on
``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend). Text stays text
(``svg.fonttype = none``), which keeps the files small and lets the browser render the fonts.
"""

from __future__ import annotations

import io
import re

import numpy as np
from matplotlib import rc_context, ticker
from matplotlib.figure import Figure

from recsys.core.units import format_bytes

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "recsys-report",  # deterministic element ids
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_BUCKET_COLORS = {"head": "#1f77b4", "torso": "#2ca02c", "tail": "#ff7f0e", "oov": "#d62728"}


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and doctype
    return re.sub(r"<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # creator and date: noise


def _bytes_axis(axis) -> None:
    """Log-scale byte axis labelled ``1.00 MiB`` (plain text: mathtext ``10^6`` labels are slow to lay out)."""
    axis.set_major_locator(ticker.LogLocator(base=10, numticks=6))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: format_bytes(int(v))))
    axis.set_minor_formatter(ticker.NullFormatter())


def _figure(width: float, height: float, panels: int = 1, rows: int = 1, **margins) -> tuple[Figure, list]:
    """A figure of ``rows`` x ``panels`` axes with fixed margins in inches (matplotlib's automatic
    layouts measure every label several times and cost most of a report's build time)."""
    fig = Figure(figsize=(width, height))
    m = {"left": 0.75, "right": 0.15, "bottom": 0.5, "top": 0.3, "wspace": 0.3, "hspace": 0.15, **margins}
    fig.subplots_adjust(left=m["left"] / width, right=1 - m["right"] / width, bottom=m["bottom"] / height,
                        top=1 - m["top"] / height, wspace=m["wspace"], hspace=m["hspace"])
    axes = fig.subplots(rows, panels, squeeze=False, sharex=rows > 1)
    return fig, list(axes.ravel())


def roc_pr(run: dict) -> str:
    """ROC with the chance diagonal, and precision-recall with the base rate."""
    with rc_context(_STYLE):
        fig, (roc, pr) = _figure(8, 3.4, 2)
        roc.plot(run["roc"]["x"], run["roc"]["y"], color="#1f77b4", label=f"AUC {run['roc']['area']:.4f}")
        roc.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
        roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1))
        roc.legend(loc="lower right")
        rate = run["metrics"]["positive_rate"]
        pr.plot(run["pr"]["x"], run["pr"]["y"], color="#9467bd", label=f"average precision {run['pr']['area']:.4f}")
        pr.axhline(rate, color="grey", linestyle=":", label=f"click rate {rate:.4f}")
        pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1))
        pr.legend(loc="upper right")
        return _svg(fig)


def reliability(run: dict) -> str:
    """Observed click rate against mean prediction per equal-mass bin, and the rows per bin."""
    rel = run["reliability"]
    with rc_context(_STYLE):
        fig, (ax, counts) = _figure(8, 3.6, 2, bottom=0.95)
        top = max(max(rel["mean_prediction"]), max(rel["observed_rate"])) * 1.05
        ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect calibration")
        ax.plot(rel["mean_prediction"], rel["observed_rate"], marker="o", color="#1f77b4",
                label=f"model (ECE {rel['ece']:.4f})")
        ax.set(xlabel="mean predicted click probability (bin)", ylabel="observed click rate (bin)",
               title="Reliability diagram", xlim=(0, top), ylim=(0, top))
        ax.legend(loc="upper left")
        centers = np.arange(len(rel["rows"]))
        counts.bar(centers, rel["rows"], color="#aec7e8")
        counts.set(xlabel="bin (equal-mass, by predicted probability)", ylabel="rows", title="Rows per bin")
        counts.set_xticks(centers, [f"{p:.3f}" for p in rel["mean_prediction"]], rotation=90, fontsize=7)
        return _svg(fig)


def frequency(run: dict) -> str:
    """AUC and logloss of every feature's head/torso/tail/OOV rows (markers sized by rows)."""
    freq = run["frequency"]
    features = list(freq["features"])
    buckets = freq["buckets"]
    with rc_context(_STYLE):
        fig, (auc_ax, ll_ax) = _figure(9, 5.2, rows=2, bottom=0.45)
        x = np.arange(len(features))
        total = max(run["metrics"]["rows"], 1)
        for k, bucket in enumerate(buckets):
            offset = (k - (len(buckets) - 1) / 2) * 0.18
            rows = np.array([freq["features"][f]["rows"][k] for f in features], dtype=float)
            size = 6 + 60 * np.sqrt(rows / total)
            for ax, key in ((auc_ax, "auc"), (ll_ax, "logloss")):
                values = np.array([freq["features"][f][key][k] for f in features], dtype=float)
                ax.scatter(x + offset, values, s=size, color=_BUCKET_COLORS[bucket], label=bucket, alpha=0.85)
        auc_ax.axhline(run["metrics"]["auc"], color="grey", linestyle=":", label="all rows")
        ll_ax.axhline(run["metrics"]["logloss"], color="grey", linestyle=":")
        auc_ax.set(ylabel="AUC", title="By id frequency (marker area ~ rows)")
        ll_ax.set(ylabel="logloss")
        ll_ax.set_xticks(x, features, rotation=90)
        auc_ax.legend(ncol=5, loc="lower left", fontsize=8)
        return _svg(fig)


def training(run: dict) -> str:
    """Training loss, validation AUC and training samples/s against samples (or steps) seen."""
    curves = run["training"]
    with rc_context(_STYLE):
        fig, (loss, auc, speed) = _figure(9, 3.0, 3, left=0.7, wspace=0.45)
        loss.plot(curves["train"]["x"], curves["train"]["loss"], color="#1f77b4")
        loss.set(xlabel=f"{curves['axis']} seen", ylabel="training loss", title="Loss")
        auc.plot(curves["valid"]["x"], curves["valid"]["auc"], marker="o", color="#2ca02c")
        auc.set(xlabel=f"{curves['axis']} seen", ylabel="validation AUC", title="Validation AUC")
        speed.plot(curves["train"]["x"], curves["train"]["samples_per_s"], color="#ff7f0e")
        speed.set(xlabel=f"{curves['axis']} seen", ylabel="samples/s (cumulative)", title="Training speed")
        return _svg(fig)


def memory(run: dict) -> str:
    """Embedding bytes per feature (log scale), coloured by method."""
    rows = [r for r in run["features"] if r.get("bytes")]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    palette = dict(zip(methods, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"] * 4))
    with rc_context(_STYLE):
        fig, (ax,) = _figure(8, 0.9 + 0.12 * len(rows), left=0.5, bottom=0.45)
        y = np.arange(len(rows))
        ax.barh(y, [r["bytes"] for r in rows], color=[palette[r["method"]] for r in rows])
        ax.set_yticks(y, [r["feature"] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        _bytes_axis(ax.xaxis)
        ax.set(xlabel="bytes (weights + optimizer state + combiner)", title="Embedding memory by feature")
        for method, color in palette.items():
            ax.barh([], [], color=color, label=method)
        ax.legend(loc="lower right")
        return _svg(fig)


def pareto(points: list[dict], baseline: str) -> str:
    """AUC against embedding bytes for every run, the Pareto front joined and highlighted."""
    with rc_context(_STYLE):
        fig, (ax,) = _figure(8, 4.2)
        off = [p for p in points if not p["on_front"]]
        front = [p for p in points if p["on_front"]]
        ax.scatter([p["bytes"] for p in off], [p["auc"] for p in off], color="#aaaaaa", label="dominated", zorder=2)
        ax.plot([p["bytes"] for p in front], [p["auc"] for p in front], marker="o", color="#d62728",
                label="Pareto front", zorder=3)
        for p in points:
            weight = "bold" if p["name"] == baseline else "normal"
            ax.annotate(p["name"], (p["bytes"], p["auc"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, fontweight=weight)
        ax.set_xscale("log")
        _bytes_axis(ax.xaxis)
        ax.set(xlabel="embedding bytes (weights + optimizer state + combiner)", ylabel="AUC",
               title="Memory vs AUC")
        ax.legend(loc="lower right")
        return _svg(fig)
