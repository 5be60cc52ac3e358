"""Offline evaluation of a saved checkpoint: rebuild the model, score a split, write a report."""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.allocator import describe_allocator
from recsys.data.layout import DatasetMeta
from recsys.data.loader import ParquetBatches
from recsys.evaluation.evaluate import evaluate
from recsys.evaluation.report import load_bayes, write_report
from recsys.evaluation.config import EvalJobConfig
from recsys.models.build import build_model, recipe_from_dict
from recsys.core.checkpoint import load_checkpoint, resolve_checkpoint

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: EvalJobConfig, out_dir: str | Path) -> dict:
    """Score ``cfg.checkpoint`` on ``cfg.split``; write ``eval.json``/``eval.md`` into ``out_dir``."""
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
    metrics = evaluate(model, batches)
    memory = model.embedding.memory().summary()
    json_path, md_path = write_report(
        Path(out_dir),
        metrics,
        split=cfg.split,
        dataset=data_path,
        bayes=load_bayes(data_path, cfg.split),
        memory=memory,
        extra={"checkpoint": str(path), "step": payload["state"]["step"]},
    )
    log.info("%s: AUC %.5f logloss %.5f NE %.4f", cfg.split, metrics.auc, metrics.logloss, metrics.normalized_entropy)
    return {"metrics": metrics.to_dict(), "json": str(json_path), "markdown": str(md_path)}
