"""OptEmbed's stages (Lyu et al., CIKM 2022) as one run or one stage at a time.

``recsys-train embedding=optembed`` calls :func:`run_stages`, which runs, per
``embedding.stage``:

- ``supernet``: train the supernet (learned row thresholds, sampled widths) with the ordinary
  training loop; write the kept-row masks (``masks.pt``, ``masks.json``).
- ``search``: evolutionary search of per-field widths on validation AUC with the trained
  supernet; write ``dims.json`` and the history (``search.json``).
- ``retrain``: train a fresh model with the fixed masks (same seed, so the same initial
  tables as the supernet), compact it to small tables, check and report the compacted model
  (``eval.json`` in the run directory, with its memory) and save it as the run's checkpoint,
  so ``recsys-eval checkpoint=<run>`` scores the compacted model.
- ``all``: the three in a row.

Everything a stage writes lies in ``<run_dir>/optembed/`` (sub-runs in ``supernet/`` and
``retrain/``, each with its own metrics and report). A single stage reads its inputs from
``embedding.artifacts`` (an earlier run's ``optembed/`` directory) and copies the masks and
dims it used into its own, so a chain of single-stage runs stays self-contained.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from recsys.data.layout import DatasetMeta
from recsys.data.loader import Batch, ParquetBatches
from recsys.embeddings.build import dataset_features
from recsys.embeddings.compiler import plan_bytes
from recsys.embeddings.embedding_config import parse_embedding_config
from recsys.core.units import format_bytes
from recsys.embeddings.evolutionary_search import SearchResult, evolutionary_search
from recsys.embeddings.optembed_artifacts import DIMS_JSON, MASKS_JSON, MASKS_PT, load_dims, load_kept, load_mask_summary, save_dims, save_masks
from recsys.embeddings.optembed_compaction import compact_rows, copy_compacted
from recsys.embeddings.optembed_masks import kept_rows
from recsys.embeddings.optembed_modules import SupernetMask
from recsys.embeddings.specs import OptEmbedNetwork, OptEmbedSpec, OptEmbedStage
from recsys.evaluation.breakdown import feature_memory
from recsys.evaluation.evaluate import predict
from recsys.evaluation.runs import write_predictions
from recsys.embeddings.specs import TableOptimizer
from recsys.core.metrics import CTRMetrics, auc
from recsys.evaluation.report import load_bayes, write_report
from recsys.models.build import build_model, load_weights, recipe_to_dict
from recsys.models.dlrm import DLRM
from recsys.core.checkpoint import checkpoint_path, load_checkpoint, make_payload, save_checkpoint
from recsys.train.config import TrainJobConfig, job_config_dict
from recsys.train.loop import TrainResult, train

log = logging.getLogger(__name__)

ARTIFACTS_DIR = "optembed"
SEARCH_JSON = "search.json"
# compaction renumbers rows and drops zeros: predictions may differ only by float rounding
COMPACTION_TOLERANCE = 1e-5


@dataclasses.dataclass
class OptEmbedResult:
    """What a stage run returns (the CLI prints ``report`` and returns ``eval['auc']``)."""

    run_dir: str
    stage: str
    report: str
    eval: dict
    memory: dict


def optembed_spec(cfg: TrainJobConfig) -> OptEmbedSpec:
    """The run's OptEmbed spec. The stages train, search and compact the whole model, so every
    feature must use OptEmbed: a mix is an error naming the keys that make it."""
    setup = parse_embedding_config(cfg.embedding)
    if setup.default.method != "optembed":
        keys = [f"embedding.overrides.{name}.method=optembed" for name, spec in setup.overrides.items() if spec.method == "optembed"]
        raise ValueError(
            f"{', '.join(keys)}: OptEmbed's stages (supernet, search, retrain) run on the whole model, so optembed "
            f"cannot be one feature's method under embedding.method={setup.default.method}; use embedding=optembed"
        )
    others = [f"embedding.overrides.{name}.method={spec.method}" for name, spec in setup.overrides.items() if spec.method != "optembed"]
    if others:
        raise ValueError(f"{', '.join(others)}: embedding=optembed runs its stages on every feature; drop these overrides")
    if cfg.trainer.resume_from:
        raise ValueError("trainer.resume_from is not supported by optembed; rerun one stage with embedding.stage and embedding.artifacts")
    return setup.default


def stage_config(cfg: TrainJobConfig, network: OptEmbedNetwork, artifacts: Path, epochs: int | None = None) -> TrainJobConfig:
    """``cfg`` with the embedding compiled to ``network`` from ``artifacts``, and ``epochs``."""
    node = OmegaConf.to_container(OmegaConf.create(cfg.embedding), resolve=True, enum_to_str=True)
    embedding = {**node, "network": network.value}
    if network is not OptEmbedNetwork.supernet:  # the supernet reads no artifacts
        embedding["artifacts"] = str(artifacts.resolve())
    trainer = dataclasses.replace(cfg.trainer, epochs=epochs or cfg.trainer.epochs)
    return dataclasses.replace(cfg, embedding=embedding, trainer=trainer)


def load_trained(cfg: TrainJobConfig, run_dir: Path) -> DLRM:
    """The model of ``cfg`` with the weights of ``run_dir``'s latest checkpoint."""
    model = build_model(cfg.recipe(), DatasetMeta.load(cfg.data.path), cfg.device)
    load_weights(model, load_checkpoint(run_dir))
    return model


def supernet_combiners(model: DLRM) -> dict[str, SupernetMask]:
    """Each feature's combiner of a supernet model, by feature name."""
    return {name: m.combiner for name, m in zip(model.embedding.features, model.embedding.feature_modules)}


def copy_artifacts(source: Path, target: Path, names: list[str]) -> None:
    """Bring an earlier stage's outputs into this run's artifacts directory."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (source / name).exists():
            raise FileNotFoundError(f"embedding.artifacts={source} has no {name}")
        if (source / name).resolve() != (target / name).resolve():
            shutil.copy2(source / name, target / name)


# --- stage 1: supernet ---------------------------------------------------------------------


def final_masks(model: DLRM) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The supernet's kept rows per feature (‖e‖₁ > t_f over its whole table) and thresholds."""
    weights = model.embedding.lookup.table_weights()
    combiners = supernet_combiners(model)
    thresholds = {name: float(c.threshold.detach()) for name, c in combiners.items()}
    return {name: kept_rows(weights[name].detach(), thresholds[name]) for name in combiners}, thresholds


def run_supernet(cfg: TrainJobConfig, spec: OptEmbedSpec, out: Path) -> TrainResult:
    sub = stage_config(cfg, OptEmbedNetwork.supernet, out, spec.supernet_epochs)
    result = train(sub, out / "supernet")
    kept, thresholds = final_masks(load_trained(sub, out / "supernet"))
    save_masks(out, kept, thresholds)
    total = sum(m.numel() for m in kept.values())
    log.info("optembed supernet: kept %d of %d rows", sum(int(m.sum()) for m in kept.values()), total)
    for name, mask in kept.items():
        log.info("optembed supernet: %s kept %d/%d rows (threshold %.4f)", name, int(mask.sum()), mask.numel(), thresholds[name])
    return result


# --- stage 2: search ----------------------------------------------------------------------


@torch.no_grad()
def validation_auc(model: DLRM, batches: list[Batch], dims: dict[str, int]) -> float:
    """The supernet's validation AUC with each field's width set to ``dims``."""
    combiners = supernet_combiners(model)
    for name, d in dims.items():
        combiners[name].eval_dim = d
    try:
        return auc(*predict(model, batches))
    finally:
        for combiner in combiners.values():
            combiner.eval_dim = combiner.dim


def run_search(cfg: TrainJobConfig, spec: OptEmbedSpec, out: Path, source: Path) -> SearchResult:
    sub = stage_config(cfg, OptEmbedNetwork.supernet, out)
    model = load_trained(sub, source / "supernet")
    features = list(model.embedding.features)
    batches = list(ParquetBatches(cfg.data.path, "valid", cfg.data.eval_batch_size, limit_batches=spec.search_batches))
    kept = {name: entry["kept"] for name, entry in load_mask_summary(out).items()}

    def fitness(candidate: tuple[int, ...]) -> float:
        return validation_auc(model, batches, dict(zip(features, candidate)))

    result = evolutionary_search(
        fitness,
        len(features),
        spec.candidates(cfg.model.embedding_dim),
        population=spec.population,
        iterations=spec.iterations,
        parents=spec.parents,
        mutation_prob=spec.mutation_prob,
        crossover_prob=spec.crossover_prob,
        seed=spec.search_seed,
    )
    dims = dict(zip(features, result.best))
    full = validation_auc(model, batches, {name: cfg.model.embedding_dim for name in features})
    save_dims(out, dims)
    record = {
        "dims": dims,
        "valid_auc": result.fitness,
        "valid_auc_full_dims": full,
        "evaluated": result.evaluated,
        "compact_parameters": sum(compact_rows(kept[n]) * d for n, d in dims.items()),
        "settings": {k: getattr(spec, k) for k in ("population", "iterations", "parents", "mutation_prob", "crossover_prob", "search_batches", "search_seed")},
        "history": result.history,
    }
    (out / SEARCH_JSON).write_text(json.dumps(record, indent=2) + "\n")
    log.info("optembed search: valid AUC %.5f (full dims %.5f) after %d candidates", result.fitness, full, result.evaluated)
    log.info("optembed search: dims %s", " ".join(f"{n}={d}" for n, d in dims.items()))
    return result


# --- stage 3: retrain and compaction ------------------------------------------------------


@torch.no_grad()
def copy_into_compact(retrained: DLRM, compact: DLRM, artifacts: Path) -> DLRM:
    """Fill a compacted model from a retrained one: kept rows and searched dims copied into
    the small tables (zero OOV rows), every other layer copied as is."""
    copy_compacted(retrained.embedding.lookup.table_weights(), compact.embedding.lookup.table_weights(), load_kept(artifacts), load_dims(artifacts))
    for name, child in retrained.named_children():
        if name != "embedding":
            getattr(compact, name).load_state_dict(child.state_dict())
    return compact


def _batches(cfg: TrainJobConfig, split: str, limit: int | None) -> ParquetBatches:
    return ParquetBatches(cfg.data.path, split, cfg.data.eval_batch_size, limit_batches=limit)


def embedding_bytes(cfg: TrainJobConfig) -> int:
    """Exact bytes of ``cfg``'s embedding plan (tables, fused optimizer state, combiner weights)."""
    features = dataset_features(DatasetMeta.load(cfg.data.path), None, with_counts=False)
    optimizer = TableOptimizer(cfg.trainer.table_optimizer.kind)
    return plan_bytes(parse_embedding_config(cfg.embedding), features, cfg.model.embedding_dim, optimizer)


def save_compact_checkpoint(model: DLRM, cfg: TrainJobConfig, run_dir: Path, steps: int) -> Path:
    """The compacted model as the run's checkpoint (``recsys-eval checkpoint=<run_dir>``)."""
    payload = make_payload(
        model=model.state_dict(),
        recipe=recipe_to_dict(cfg.recipe()),
        state={"step": steps},
        config=job_config_dict(cfg),
    )
    return save_checkpoint(checkpoint_path(run_dir, steps), payload)


def run_retrain(cfg: TrainJobConfig, spec: OptEmbedSpec, out: Path, run_dir: Path) -> OptEmbedResult:
    """Retrain with the fixed masks, compact, report the compacted model, save it."""
    sub = stage_config(cfg, OptEmbedNetwork.retrain, out, spec.retrain_epochs)
    retrained_result = train(sub, out / "retrain")
    retrained = load_trained(sub, out / "retrain")
    compact_cfg = stage_config(cfg, OptEmbedNetwork.compact, out)
    compact = copy_into_compact(retrained, build_model(compact_cfg.recipe(), DatasetMeta.load(cfg.data.path), cfg.device), out)
    check = list(_batches(cfg, "valid", 1))
    gap = float(np.max(np.abs(predict(compact, check)[0] - predict(retrained, check)[0])))
    if gap > COMPACTION_TOLERANCE:
        raise RuntimeError(
            f"optembed compaction changed predictions by up to {gap:.2e} (> {COMPACTION_TOLERANCE:.0e}) on a "
            "validation batch: the compact model is not the retrained one"
        )
    probs, labels = predict(compact, _batches(cfg, cfg.eval.split, cfg.eval.max_batches))
    metrics = CTRMetrics.compute(probs, labels)
    memory = compact.embedding.memory().summary()
    sizes = {"supernet": embedding_bytes(stage_config(cfg, OptEmbedNetwork.supernet, out)), "retrain": retrained_result.memory["total_bytes"], "compact": memory["total_bytes"]}
    log.info(
        "optembed compaction: embedding bytes %s (supernet) -> %s (compact); max |p_compact - p_retrained| = %.2e",
        format_bytes(sizes["supernet"]), format_bytes(sizes["compact"]), gap,
    )
    for line in compact.embedding.plan.describe():
        log.info("optembed %s", line)
    save_compact_checkpoint(compact, compact_cfg, run_dir, retrained_result.steps)
    summary = load_mask_summary(out)
    extra = {
        "optembed": {
            "kept_rows": {n: e["kept"] for n, e in summary.items()},
            "rows": {n: e["rows"] for n, e in summary.items()},
            "dims": load_dims(out),
            "bytes": sizes,
            "retrained_eval": retrained_result.eval,
            "max_prediction_gap_vs_retrained": gap,
        },
        "train": {"steps": retrained_result.steps, "samples": retrained_result.samples},
        "feature_memory": feature_memory(compact.embedding),
    }
    if cfg.eval.save_predictions:
        extra["predictions"] = write_predictions(run_dir, probs, labels)
    _, md_path = write_report(
        run_dir, metrics, split=cfg.eval.split, dataset=cfg.data.path, bayes=load_bayes(cfg.data.path, cfg.eval.split),
        memory=memory, extra=extra,
    )
    log.info("%s (compacted): AUC %.5f logloss %.5f", cfg.eval.split, metrics.auc, metrics.logloss)
    return OptEmbedResult(str(run_dir), OptEmbedStage.retrain.value, str(md_path), metrics.to_dict(), memory)


# --- the runner ---------------------------------------------------------------------------


def _search_result(run_dir: Path, out: Path, result: SearchResult) -> OptEmbedResult:
    report = out / SEARCH_JSON
    return OptEmbedResult(str(run_dir), OptEmbedStage.search.value, str(report), {"auc": result.fitness}, {})


def run_stages(cfg: TrainJobConfig, run_dir: str | Path) -> OptEmbedResult:
    """Run the stages ``embedding.stage`` asks for; artifacts go to ``<run_dir>/optembed``."""
    spec = optembed_spec(cfg)
    run_dir = Path(run_dir)
    out = run_dir / ARTIFACTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    stage = spec.stage
    # a single later stage reads an earlier run's artifacts; a run from the supernet, its own
    source = out if stage in (OptEmbedStage.all, OptEmbedStage.supernet) else Path(spec.artifacts)
    if stage in (OptEmbedStage.all, OptEmbedStage.supernet):
        supernet = run_supernet(cfg, spec, out)
        if stage is OptEmbedStage.supernet:
            return OptEmbedResult(str(run_dir), stage.value, supernet.report, supernet.eval, supernet.memory)
    if stage in (OptEmbedStage.all, OptEmbedStage.search):
        copy_artifacts(source, out, [MASKS_PT, MASKS_JSON])
        searched = run_search(cfg, spec, out, source)
        if stage is OptEmbedStage.search:
            return _search_result(run_dir, out, searched)
    else:
        copy_artifacts(source, out, [MASKS_PT, MASKS_JSON, DIMS_JSON])
    return dataclasses.replace(run_retrain(cfg, spec, out, run_dir), stage=stage.value)
