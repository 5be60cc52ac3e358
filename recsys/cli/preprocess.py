"""``recsys-preprocess``: raw CTR files (Criteo, Avazu or any schema; plain or .gz) → Parquet shards + vocabularies."""

from __future__ import annotations

import sys

from recsys.cli.common import hydra_entry_point
from recsys.data.config import PreprocessConfig


def preprocess(job: PreprocessConfig) -> None:
    from recsys.data.ingest import preprocess as ingest

    try:
        stats = ingest(job)
    except (ValueError, OSError) as exc:  # bad rows (fail mode), no good row, bad schema or config, missing files
        print(f"recsys-preprocess: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"wrote {stats.rows_out:,} rows ({stats.bad_rows:,} bad rows skipped) to {job.output} "
        f"at {stats.rows_per_s:,.0f} rows/s; stats: {job.output}/stats.json"
    )


def schema_file_overrides(argv: list[str]) -> list[str]:
    """``schema=<path.yaml>`` -> ``schema_file=<path.yaml>``: Hydra groups take preset names
    only, so a schema file is passed on as a file and read by the ingest."""
    return [f"schema_file={arg.split('=', 1)[1]}" if arg.startswith("schema=") and arg.endswith((".yaml", ".yml"))
            else arg for arg in argv]


_app = hydra_entry_point("preprocess", preprocess, schema=PreprocessConfig)


def main() -> None:
    sys.argv[1:] = schema_file_overrides(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
