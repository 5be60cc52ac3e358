"""``recsys-predict``: score raw Criteo files through a serving artifact."""

from __future__ import annotations

import dataclasses
import sys

from recsys.cli.common import hydra_entry_point, run_dir
from recsys.serving.config import PredictConfig


def predict(job: PredictConfig) -> None:
    from recsys.core.io import write_json
    from recsys.data.ingest import BadRowError
    from recsys.serving.predict import predict_files

    try:
        result = predict_files(job)
    except BadRowError as exc:
        print(f"recsys-predict: {exc}", file=sys.stderr)
        sys.exit(2)
    write_json(run_dir() / "predict.json", dataclasses.asdict(result))
    print(f"scored {result.rows_scored:,} rows ({result.bad_rows:,} bad rows skipped) into {result.output} "
          f"at {result.rows_per_s:,.0f} rows/s; summary: {run_dir() / 'predict.json'}")
    for example in result.bad_row_examples:
        print(f"  bad row {example['file']}:{example['line']}: {example['reason']}"
              + (f" in column {example['feature']}" if "feature" in example else ""))
    if result.metrics:
        print(f"AUC {result.metrics['auc']:.5f} logloss {result.metrics['logloss']:.5f}")


main = hydra_entry_point("predict", predict, schema=PredictConfig)

if __name__ == "__main__":
    main()
