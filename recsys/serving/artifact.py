"""The artifact directory: its files, its ``metadata.json``, and verified loading.

An artifact is a directory::

    model.ts        TorchScript (``torch::jit::load`` in C++, ``torch.jit.load`` in Python)
    model.pt2       ``torch.export`` program, dynamic batch size
    metadata.json   input contract, features, dense transform, plan, quantization, metrics,
                    versions, and the SHA-256 of each model file

Both model files load with torch and fbgemm_gpu alone (``import fbgemm_gpu`` registers the
table-batched lookup's operators); :func:`load_model` adds the checks a server wants: the
artifact version, and each file's checksum, so a damaged file fails at load with its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsys.core.io import file_sha256, read_json
from recsys.serving.config import ArtifactFormat

ARTIFACT_VERSION = 1
METADATA = "metadata.json"
MODEL_FILES = {ArtifactFormat.torchscript: "model.ts", ArtifactFormat.export: "model.pt2"}


class ArtifactError(ValueError):
    """An artifact that is incomplete, damaged or from another recsys version."""


def read_metadata(artifact: str | Path) -> dict[str, Any]:
    path = Path(artifact) / METADATA
    if not path.exists():
        raise ArtifactError(f"{artifact}: no {METADATA} (not an artifact written by recsys-export)")
    try:
        metadata = read_json(path)
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    version = metadata.get("artifact_version")
    if version != ARTIFACT_VERSION:
        raise ArtifactError(f"{path}: artifact_version {version!r}, this recsys reads {ARTIFACT_VERSION}")
    return metadata


def verified_model_path(artifact: str | Path, fmt: ArtifactFormat | str) -> Path:
    """The model file of ``fmt``, after checking it against the checksum in the metadata."""
    fmt = ArtifactFormat(fmt)
    metadata = read_metadata(artifact)
    path = Path(artifact) / MODEL_FILES[fmt]
    expected = metadata.get("files", {}).get(path.name)
    if expected is None or not path.exists():
        raise ArtifactError(f"{artifact}: no {path.name} ({fmt.value} was not exported)")
    if file_sha256(path) != expected["sha256"]:
        raise ArtifactError(f"{path}: contents do not match the SHA-256 in {METADATA} (damaged or replaced file)")
    return path


class CheckedProgram:
    """An exported program behind the input checks ``model.ts`` runs inside itself.

    ``torch.export``'s own guards refuse a wrong dtype or rank too, but without naming the
    input ("Tensor dtype mismatch! Expected: Long", "tuple index out of range").
    """

    def __init__(self, module, metadata: dict[str, Any]) -> None:
        self.module = module
        self.num_dense = metadata["inputs"]["dense"]["shape"][1]
        self.num_sparse = metadata["inputs"]["sparse"]["shape"][1]

    def __call__(self, dense, sparse):
        from recsys.serving.model import check_inputs

        check_inputs(dense, sparse, self.num_dense, self.num_sparse)
        return self.module(dense, sparse)


def load_model(artifact: str | Path, fmt: ArtifactFormat | str = ArtifactFormat.torchscript):
    """A callable ``model(dense, sparse) -> probabilities`` from a verified artifact file."""
    import fbgemm_gpu  # noqa: F401  (registers the fbgemm operators the models call)
    import torch

    path = verified_model_path(artifact, fmt)
    if ArtifactFormat(fmt) is ArtifactFormat.torchscript:
        return torch.jit.load(str(path), map_location="cpu")
    return CheckedProgram(torch.export.load(str(path)).module(), read_metadata(artifact))


def fbgemm_operator_libraries() -> list[Path]:
    """The fbgemm_gpu operator libraries a C++ server loads before ``model.ts``, in the order
    ``import fbgemm_gpu`` loads them (``fbgemm_gpu_py.so`` last; it needs the others)."""
    import fbgemm_gpu

    root = Path(fbgemm_gpu.__file__).parent
    return [root / f"{name}.so" for name in fbgemm_gpu.fbgemm_gpu_libraries]
