"""Offline evaluation of a saved checkpoint: rebuild the model, score a split, write a report."""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.allocator import describe_allocator
from recsys.data.loader import ParquetBatches
from recsys.core.metrics import CTRMetrics
from recsys.evaluation.breakdown import feature_memory
from recsys.evaluation.config import EvalJobConfig
from recsys.evaluation.evaluate import predict
from recsys.evaluation.report import load_bayes, write_report
from recsys.evaluation.runs import write_predictions
from recsys.models.build import load_trained_model

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: EvalJobConfig, out_dir: str | Path) -> dict:
    """Score ``cfg.checkpoint`` on ``cfg.split``; write ``eval.json``/``eval.md`` (and, as configured,
    ``predictions.parquet`` and ``report.html``) into ``out_dir``."""
    log.info(describe_allocator())
    trained = load_trained_model(cfg.checkpoint, cfg.data_path)
    model, data_path = trained.model, trained.data_path
    batches = ParquetBatches(data_path, cfg.split, cfg.batch_size, limit_batches=cfg.max_batches)
    probs, labels = predict(model, batches)  # split file order: batches are not shuffled
    metrics = CTRMetrics.compute(probs, labels)
    embedding = model.embedding
    extra = {
        "checkpoint": str(trained.checkpoint.resolve()),
        "step": trained.payload["state"]["step"],
        "feature_memory": feature_memory(embedding),
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
