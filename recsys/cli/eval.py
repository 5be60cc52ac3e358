"""``recsys-eval``: score a trained checkpoint on a split (Hydra app)."""

from __future__ import annotations

from recsys.cli.common import hydra_entry_point, run_dir
from recsys.evaluation.config import EvalJobConfig


def evaluate(job: EvalJobConfig) -> float:
    from recsys.evaluation.offline import evaluate_checkpoint

    result = evaluate_checkpoint(job, run_dir())
    if "html" in result:
        print(f"HTML report at {result['html']}")
    print(f"report: {result['markdown']}")
    return result["metrics"]["auc"]


main = hydra_entry_point("eval", evaluate, schema=EvalJobConfig, tcmalloc=True)

if __name__ == "__main__":
    main()
