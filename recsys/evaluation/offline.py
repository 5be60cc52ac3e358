"""Offline evaluation of a saved checkpoint: rebuild the model, score a split, write a report."""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.allocator import describe_allocator
from recsys.data.layout import DatasetMeta
from recsys.data.loader import ParquetBatches
from recsys.core.metrics import CTRMetrics
from recsys.evaluation.breakdown import feature_memory
from recsys.evaluation.config import EvalJobConfig
from recsys.evaluation.evaluate import predict
from recsys.evaluation.report import load_bayes, write_report
from recsys.evaluation.runs import write_predictions
from recsys.models.build import build_model, recipe_from_dict
from recsys.core.checkpoint import load_checkpoint, resolve_checkpoint

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: EvalJobConfig, out_dir: str | Path) -> dict:
    """Score ``cfg.checkpoint`` on ``cfg.split``; write ``eval.json``/``eval.md`` (and, as configured,
    ``predictions.parquet`` and ``report.html``) into ``out_dir``."""
    log.info(describe_allocator())
    path = resolve_checkpoint(cfg.checkpoint)
    payload = load_checkpoint(path)
    recipe = recipe_from_dict(payload["recipe"])
    data_path = cfg.data_path or recipe.data_path
    meta = DatasetMeta.load(data_path)
    trained_on = recipe.data_path
    if data_path != trained_on:
        trained_meta = DatasetMeta.load(trained_on) if Path(trained_on, "meta.json").exists() else None
        if trained_meta and trained_meta.num_embeddings != meta.num_embeddings:
            raise ValueError(
                f"{data_path} has table sizes {meta.num_embeddings}, but the checkpoint was trained on "
                f"{trained_on} with {trained_meta.num_embeddings}: ids would not mean the same rows"
            )
    model = build_model(recipe, meta)
    model.load_state_dict(payload["model"])
    batches = ParquetBatches(data_path, cfg.split, cfg.batch_size, limit_batches=cfg.max_batches)
    probs, labels = predict(model, batches)  # split file order: batches are not shuffled
    metrics = CTRMetrics.compute(probs, labels)
    embedding = model.embedding
    extra = {
        "checkpoint": str(path.resolve()),
        "step": payload["state"]["step"],
        "feature_memory": feature_memory(embedding.plan, embedding.lookup.optimizer_config.kind),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.save_predictions:
        extra["predictions"] = write_predictions(out_dir, probs, labels)
    json_path, md_path = write_report(
        out_dir,
        metrics,
        split=cfg.split,
        dataset=str(Path(data_path).resolve()),
        bayes=load_bayes(data_path, cfg.split),
        memory=embedding.memory().summary(),
        extra=extra,
    )
    log.info("%s: AUC %.5f logloss %.5f NE %.4f", cfg.split, metrics.auc, metrics.logloss, metrics.normalized_entropy)
    result = {"metrics": metrics.to_dict(), "json": str(json_path), "markdown": str(md_path)}
    if cfg.html_report:
        from recsys.evaluation.report_html import build_report

        result["html"] = str(out_dir / "report.html")
        build_report([str(out_dir)], result["html"])
    return result
