"""``recsys-export``: a trained checkpoint → a serving artifact (TorchScript + torch.export)."""

from __future__ import annotations

from recsys.cli.common import hydra_entry_point
from recsys.serving.config import ExportConfig


def export(job: ExportConfig) -> None:
    from recsys.serving.export import export_artifact

    metadata = export_artifact(job)
    plan = metadata["plan"]
    print(
        f"wrote {job.output}: {', '.join(metadata['files'])}; {metadata['quantize']} tables "
        f"{plan['table_bytes']:,} bytes ({plan['table_bytes'] / plan['fp32_table_bytes']:.3f} of fp32)"
    )


main = hydra_entry_point("export", export, schema=ExportConfig)

if __name__ == "__main__":
    main()
