"""The Hydra apps as a user runs them: every config composes, jobs and sweeps run end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from recsys.cli.common import CONF_DIR
from recsys.cli.train import to_job_config
from recsys.embeddings.embedding_config import config_schema
from recsys.models.config import DLRMConfig
from recsys.train.config import TrainerConfig

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "embedding", "trainer", "distributed", "placement", "experiment"])
def test_every_option_of_every_group_composes_into_a_typed_job(group):
    options = group_options(group)
    assert options, f"conf/{group} is empty"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for option in options:
            cfg = compose("train", overrides=[f"+{group}={option}" if group == "experiment" else f"{group}={option}", "data.path=x"])
            job = to_job_config(cfg)
            assert job.model.bottom_mlp[-1] == job.model.embedding_dim, option
            # the embedding node is typed by its method's schema at composition
            assert OmegaConf.get_type(cfg.embedding) is config_schema(cfg.embedding.method), option


def test_group_yaml_holds_only_what_differs_from_the_schema_defaults():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        kaggle = compose("train", overrides=["model=kaggle", "data.path=x"])
        tiny = compose("train", overrides=["model=tiny", "data.path=x"])
    # the Kaggle preset: the reference DLRM's layer sizes with the direct paths of recsys.models.dlrm,
    # and bf16 dense layers where the hardware has them
    direct_paths = DLRMConfig(fm_component=True, first_order=True, dense_norm=True, bottom_last_relu=False,
                              dense_precision="auto")
    assert to_job_config(kaggle).model == direct_paths and to_job_config(kaggle).trainer == TrainerConfig()
    assert to_job_config(tiny).model == DLRMConfig(embedding_dim=8, bottom_mlp=[32, 8], top_mlp=[32, 1])
    for path in (Path(CONF_DIR) / "embedding").glob("*.yaml"):
        body = {k: v for k, v in OmegaConf.load(path).items() if k != "defaults"}
        assert body == {}, f"{path.name} repeats schema defaults: {body}"


@pytest.mark.parametrize(
    ("override", "key"),
    [("embedding.colisions=4", "colisions"), ("embedding.collisions=many", "embedding.collisions"), ("model.embeding_dim=8", "embeding_dim")],
)
def test_a_misspelt_or_mistyped_key_fails_at_composition_naming_it(override, key):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as info:
            compose("train", overrides=["embedding=qr", override, "data.path=x"])
    assert key in f"{info.value} {info.value.__cause__}"


def test_an_appended_unknown_embedding_key_fails_before_training_naming_it():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["embedding=qr", "+embedding.colisions=4", "data.path=x"])
    with pytest.raises(ValueError, match="colisions"):
        to_job_config(cfg)


@pytest.mark.parametrize("app", ["preprocess", "synth", "eval", "export", "predict"])
def test_other_apps_compose(app):
    import recsys.cli.eval  # noqa: F401
    import recsys.cli.export  # noqa: F401
    import recsys.cli.predict  # noqa: F401
    import recsys.cli.preprocess  # noqa: F401
    import recsys.cli.synth  # noqa: F401

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(app)
        assert OmegaConf.is_missing(cfg, "output" if app != "eval" else "checkpoint")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


METHODS = ["full", "hash", "qr", "md", "unified"]


@pytest.mark.slow
def test_sweep_over_embedding_methods_then_eval(tiny_dataset, tmp_path):
    run(
        [
            str(BIN / "recsys-train"),
            "-m",
            f"data.path={tiny_dataset}",
            "model=tiny",
            "data.batch_size=512",
            f"embedding={','.join(METHODS)}",
            "trainer.progress=false",
        ],
        tmp_path,
    )
    runs = sorted((p for p in (tmp_path / "runs" / "sweep").glob("*/*") if p.is_dir()), key=lambda p: int(p.name))
    assert [r.name for r in runs] == [str(i) for i in range(len(METHODS))]
    full_bytes = None
    for r, method in zip(runs, METHODS):
        assert f"embedding={method}" in (r / ".hydra" / "overrides.yaml").read_text()
        report = json.loads((r / "eval.json").read_text())
        assert report["metrics"]["rows"] == 1024
        full_bytes = full_bytes or report["memory"]["total_bytes"]
        # md's default alpha keeps dim 8 for these 51-row tables: no smaller, never larger
        assert report["memory"]["total_bytes"] <= full_bytes, method
        if method in ("hash", "qr", "unified"):
            assert report["memory"]["total_bytes"] < full_bytes, method
        log = (r / "train.log").read_text()
        assert "allocator: " in log and f"C1: {method}" in log
        assert "[TBE=" not in log, "FBGEMM's INFO chatter reached the log"  # library loggers at WARNING
    out = run([str(BIN / "recsys-eval"), f"checkpoint={runs[0]}", "split=valid"], tmp_path)
    assert "report: " in out.stdout
    report = Path(out.stdout.split("report: ")[1].strip())
    assert "Evaluation on `valid`" in (tmp_path / report).read_text()


@pytest.mark.slow
def test_method_options_are_overridable_and_typos_are_named(tiny_dataset, tmp_path):
    common = [str(BIN / "recsys-train"), f"data.path={tiny_dataset}", "model=tiny", "trainer.progress=false", "trainer.epochs=1"]
    run([*common, "embedding=md", "embedding.alpha=0.2", "+embedding.overrides.C1.method=full"], tmp_path)
    log = next((tmp_path / "runs" / "train").glob("*/train.log")).read_text()
    assert "C1: full" in log and "C2: md" in log
    bad = subprocess.run([*common, "embedding=qr", "+embedding.colisions=3"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "colisions" in bad.stderr


@pytest.mark.slow
def test_train_reports_a_missing_dataset_clearly(tmp_path):
    proc = subprocess.run(
        [str(BIN / "recsys-train"), f"data.path={tmp_path / 'nowhere'}", "model=tiny"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "not a prepared dataset" in proc.stderr
