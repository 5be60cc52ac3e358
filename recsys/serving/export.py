"""``recsys-export``: a trained checkpoint → a self-contained serving artifact.

The checkpoint's recipe rebuilds the trained DLRM (no training code), its dataset gives the
vocabularies and the dense transform, and :func:`~recsys.serving.model.serving_model` puts the
whole raw-feature path on inference tables. The result is scripted (``model.ts``) and exported
(``model.pt2``, batch size dynamic), each checked against the eager serving model on a probe
batch, and described in ``metadata.json`` (see :mod:`recsys.serving.artifact`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import platform
import warnings
from pathlib import Path

import torch

from recsys.core.io import file_sha256, read_json, write_json
from recsys.data.layout import DatasetMeta
from recsys.models.build import load_trained_model
from recsys.serving.artifact import ARTIFACT_VERSION, METADATA, MODEL_FILES
from recsys.serving.config import ArtifactFormat, ExportConfig, Quantize
from recsys.serving.model import ServingModel, serving_model
from recsys.serving.tables import row_bytes, stored_table_bytes

log = logging.getLogger(__name__)

PROBE_ROWS = 7  # rows of the batch every written model must score like the eager one
PROBE_TOLERANCE = 1e-6


def script_model(model: ServingModel) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # torch.jit.script is deprecated in favour of torch.export, but C++ servers load TorchScript
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        return torch.jit.script(model)


def export_model(model: ServingModel) -> torch.export.ExportedProgram:
    """``torch.export`` with a dynamic batch size. FBGEMM's inference lookup holds a TorchScript
    class (``AtomicCounter``) that export can only trace with the fake classes torchrec
    registers; the exported program itself loads without torchrec."""
    _register_fake_classes()
    dense, sparse = probe_batch(model, rows=2)
    batch = torch.export.Dim.DYNAMIC
    return torch.export.export(
        model, (dense, sparse), dynamic_shapes={"dense": {0: batch}, "sparse": {0: batch}}, strict=False
    )


@functools.cache
def _register_fake_classes() -> None:
    from torchrec.pt2.utils import register_fake_classes

    register_fake_classes()


def probe_batch(model: ServingModel, rows: int = PROBE_ROWS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw rows mixing missing values, in-vocabulary ids and unseen ids."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randint(-1, 1000, (rows, model.num_dense), generator=gen)
    sparse = torch.randint(0, 1 << 32, (rows, model.num_sparse), generator=gen)
    known = model.raw.keys
    if known.numel():
        # half the ids come from the vocabularies (key = feature · 2^33 + raw + 1)
        pick = known[torch.randint(0, known.numel(), (rows, model.num_sparse), generator=gen)]
        feature = pick >> 33
        own = feature == torch.arange(model.num_sparse)
        vocab_raw = (pick - (feature << 33)) - 1
        sparse = torch.where(own & (torch.rand(rows, model.num_sparse, generator=gen) < 0.5), vocab_raw, sparse)
    sparse[0, 0] = -1  # a missing id
    return dense, sparse


def export_artifact(cfg: ExportConfig) -> dict:
    """Write the artifact ``cfg.output``; return its metadata."""
    if not (cfg.torchscript or cfg.export):
        raise ValueError("ExportConfig: torchscript and export are both false; nothing to write")
    trained = load_trained_model(cfg.checkpoint, cfg.data_path)
    model, meta, data_path = trained.model, trained.meta, trained.data_path
    quantize = Quantize(cfg.quantize)
    serving = serving_model(model.eval(), meta, data_path, quantize)
    for p in serving.parameters():
        p.requires_grad_(False)

    out = Path(cfg.output)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output {out} exists and is not empty; choose a new directory or delete it")
    out.mkdir(parents=True, exist_ok=True)
    files, written = {}, {}
    if cfg.torchscript:
        scripted = script_model(serving)
        scripted.save(str(out / MODEL_FILES[ArtifactFormat.torchscript]))
        files[MODEL_FILES[ArtifactFormat.torchscript]] = ArtifactFormat.torchscript
        written[ArtifactFormat.torchscript] = scripted
    if cfg.export:
        program = export_model(serving)
        torch.export.save(program, str(out / MODEL_FILES[ArtifactFormat.export]))
        files[MODEL_FILES[ArtifactFormat.export]] = ArtifactFormat.export
        written[ArtifactFormat.export] = program.module()
    check_models(serving, written)
    metadata = describe(serving, model, meta, data_path, quantize, trained.checkpoint, trained.payload)
    metadata["files"] = {name: {"format": fmt.value, "bytes": (out / name).stat().st_size, "sha256": file_sha256(out / name)}
                         for name, fmt in files.items()}
    write_json(out / METADATA, metadata)
    log.info("wrote %s (%s tables, %s)", out, quantize.value, ", ".join(files))
    return metadata


def check_models(serving: ServingModel, models: dict) -> None:
    """Every written model must score a probe batch as the eager serving model does."""
    dense, sparse = probe_batch(serving)
    with torch.no_grad():
        expected = serving(dense, sparse)
        for fmt, model in models.items():
            error = (model(dense, sparse) - expected).abs().max().item()
            if error > PROBE_TOLERANCE:
                raise AssertionError(f"{fmt.value} model differs from the eager serving model by {error:.3g}")


def describe(serving: ServingModel, model, meta: DatasetMeta, data_path: str, quantize: Quantize, checkpoint: Path, payload: dict) -> dict:
    """``metadata.json`` (without the file checksums)."""
    import fbgemm_gpu

    plan = model.embedding.plan
    tables = [
        {"name": t.name, "rows": t.num_embeddings, "dim": t.dim, "fp32_bytes": t.weight_bytes,
         "bytes": t.num_embeddings * row_bytes(t.dim, quantize)}
        for t in plan.tables
    ]
    run_dir = checkpoint.parent.parent
    evaluation = read_json(run_dir / "eval.json") if (run_dir / "eval.json").exists() else None
    return {
        "artifact_version": ARTIFACT_VERSION,
        "inputs": {
            "dense": {"shape": ["B", len(meta.dense_features)], "dtype": "int64", "features": list(meta.dense_features),
                      "missing": "any negative value (e.g. -1); missing and negative values both count as 0"},
            "sparse": {"shape": ["B", len(meta.sparse_features)], "dtype": "int64", "features": list(meta.sparse_features),
                       "missing": -1, "encoding": "the raw id's hex digits read as an unsigned integer"},
        },
        "output": {"shape": ["B"], "dtype": "float32", "meaning": "click probability"},
        "dense_transform": meta.dense_transform,
        "vocabulary": {"source": str(data_path), "ids": {f: meta.num_embeddings[f] - 1 for f in meta.sparse_features},
                       "unseen": "the feature's OOV row (num_embeddings - 1)"},
        "quantize": quantize.value,
        "plan": {
            "dim": plan.dim,
            "features": [{"name": f.name, "method": f.method, "slots": list(f.slots), "description": f.description}
                         for f in plan.features],
            "slots": [{"table": s.table, "dim": s.dim} for s in plan.slots],
            "tables": tables,
            "table_bytes": sum(t["bytes"] for t in tables),
            "fp32_table_bytes": sum(t["fp32_bytes"] for t in tables),
            "stored_table_bytes": stored_table_bytes(serving.embedding.tables),
        },
        "checkpoint": {"path": str(checkpoint), "step": payload["state"].get("step"), "recipe": payload["recipe"],
                       "evaluation": evaluation},
        "versions": {"recsys": importlib.metadata.version("recsys"), "torch": torch.__version__,
                     "fbgemm_gpu": getattr(fbgemm_gpu, "__version__", "unknown"), "python": platform.python_version()},
    }
