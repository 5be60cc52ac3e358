"""Evaluation reports: JSON for machines, Markdown for people, written into the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from recsys.core.io import write_json
from recsys.core.units import format_bytes
from recsys.core.metrics import CTRMetrics


def load_bayes(dataset: str | Path, split: str) -> dict | None:
    """Bayes-optimal figures of a synthetic split (``bayes.json``), or None for real data."""
    path = Path(dataset) / "bayes.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(split)


def write_report(
    out_dir: Path,
    metrics: CTRMetrics,
    *,
    split: str,
    dataset: str,
    bayes: dict | None = None,
    memory: dict | None = None,
    extra: dict | None = None,
    name: str = "eval",
) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"split": split, "dataset": str(dataset), "metrics": metrics.to_dict()}
    if bayes:
        record["bayes_optimal"] = {"auc": bayes["bayes_auc"], "logloss": bayes["bayes_logloss"]}
    if memory:
        record["memory"] = memory
    record.update(extra or {})
    json_path = out_dir / f"{name}.json"
    write_json(json_path, record)
    md_path = out_dir / f"{name}.md"
    md_path.write_text(_markdown(record))
    return json_path, md_path


def _markdown(record: dict) -> str:
    m = record["metrics"]
    bayes = record.get("bayes_optimal")
    lines = [
        f"# Evaluation on `{record['split']}`",
        "",
        f"Dataset: `{record['dataset']}`  ",
        f"Rows: {m['rows']:,} ({m['positives']:,} positives, rate {m['positive_rate']:.4f})",
        "",
        "| metric | model | Bayes-optimal | gap |" if bayes else "| metric | model |",
        "|---|---|---|---|" if bayes else "|---|---|",
    ]
    for key, label in (("auc", "AUC"), ("logloss", "logloss")):
        if bayes:
            gap = m[key] - bayes[key]
            lines.append(f"| {label} | {m[key]:.5f} | {bayes[key]:.5f} | {gap:+.5f} |")
        else:
            lines.append(f"| {label} | {m[key]:.5f} |")
    pad = " | | |" if bayes else " |"
    lines += [
        f"| normalized entropy | {m['normalized_entropy']:.5f}{pad}",
        f"| calibration (mean p / rate) | {m['calibration']:.4f}{pad}",
        "",
    ]
    if "memory" in record:
        mem = record["memory"]
        lines += [
            "## Embedding memory",
            "",
            f"{mem['tables']} physical tables, {mem['parameters']:,} parameters: "
            f"weights {format_bytes(mem['weight_bytes'])}, optimizer state {format_bytes(mem['optimizer_bytes'])}, "
            f"total {format_bytes(mem['total_bytes'])}.",
            "",
        ]
        if mem.get("placement"):
            lines += [_placement_line(mem["placement"]), ""]
    return "\n".join(lines)


def _placement_line(tiers: dict) -> str:
    """Where the tables' bytes live and how often a lookup found its row in the fast tier."""
    places = [("RAM", tiers.get("ram_bytes")), ("disk", tiers.get("disk_bytes")), ("RAM, cold", tiers.get("cold_ram_bytes")),
              ("host", tiers.get("host_bytes")), ("GPU cache", tiers.get("device_cache_bytes"))]
    held = ", ".join(f"{name} {format_bytes(b)}" for name, b in places if b)
    hit = tiers.get("hit_rate")
    return f"Placement: {held}" + (f"; fast-tier hit rate {hit:.4f}." if hit is not None else ".")
