"""``recsys-report``: one HTML report over evaluated runs (Hydra app), and the sweep hook that
writes one at the end of every ``recsys-train -m``."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from recsys.cli.common import hydra_entry_point
from recsys.evaluation.config import ReportJobConfig
from recsys.evaluation.runs import PREDICTIONS

log = logging.getLogger(__name__)


def report(cfg: ReportJobConfig) -> dict:
    """Build the report ``cfg`` asks for; return its numbers."""
    from recsys.evaluation.report_html import build_report

    runs = [cfg.runs] if isinstance(cfg.runs, str) else [str(r) for r in cfg.runs]
    return build_report(runs, cfg.output, cfg.baseline, cfg.title, cfg.bins, cfg.workers)


def _run(job: ReportJobConfig) -> None:
    result = report(job)
    print(f"report: {job.output} ({len(result['runs'])} runs, {len(result['problems'])} problems)")


main = hydra_entry_point("report", _run, schema=ReportJobConfig)


class SweepReport(Callback):
    """Hydra callback (``conf/train.yaml``): once a sweep's jobs are done, write
    ``<sweep dir>/report.html``: the runs compared, with paired tests against the run with the
    most embedding bytes. A job run with ``eval.save_predictions=false`` is scored first, its
    latest checkpoint on its evaluation split with per-row predictions saved (into ``<job>/eval``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from recsys.evaluation.config import EvalJobConfig
        from recsys.evaluation.offline import evaluate_checkpoint

        sweep_dir = Path(config.hydra.sweep.dir)
        unscored = (d for d in sweep_dir.iterdir() if (d / "checkpoints").is_dir() and not (d / PREDICTIONS).is_file())
        for job in sorted(unscored, key=lambda d: d.name):
            trained = OmegaConf.load(job / ".hydra" / "config.yaml")
            cfg = EvalJobConfig(
                checkpoint=str(job),
                split=trained.eval.split,
                max_batches=trained.eval.max_batches,
                batch_size=trained.data.eval_batch_size,
                html_report=False,
            )
            try:
                evaluate_checkpoint(cfg, job / "eval")
            except (OSError, ValueError, RuntimeError) as e:  # the report names the job and what is missing
                log.error("sweep report: could not re-evaluate %s: %s", job, e)
        output = sweep_dir / "report.html"
        report(ReportJobConfig(runs=str(sweep_dir), output=str(output)))
        print(f"sweep report: {output}")


if __name__ == "__main__":
    main()
