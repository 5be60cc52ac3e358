"""``recsys-synth``: synthetic Criteo-shaped data with a planted click model and its Bayes-optimal figures."""

from __future__ import annotations

from recsys.cli.common import hydra_entry_point
from recsys.data.config import SynthConfig


def synth(job: SynthConfig) -> None:
    from recsys.data.synth import generate

    summary = generate(job)
    print(f"wrote {job.rows:,} synthetic rows to {job.output}; Bayes-optimal figures: {job.output}/bayes.json")
    test = summary.get("test")
    if test:
        print(f"test split: Bayes-optimal AUC {test['bayes_auc']:.5f}, logloss {test['bayes_logloss']:.5f}")


main = hydra_entry_point("synth", synth, schema=SynthConfig)

if __name__ == "__main__":
    main()
