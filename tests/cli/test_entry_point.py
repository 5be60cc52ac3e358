"""recsys.cli.common.hydra_entry_point: what every console script gets from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

APP = '''
from recsys.cli.common import hydra_entry_point
from recsys.data.config import SynthConfig


def probe(job):
    import logging

    print("job", type(job).__name__, job.rows, flush=True)
    logging.getLogger("probe").warning("a line for the job's log")


hydra_entry_point("synth", probe, schema=SynthConfig)()
'''


def run_app(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    script = tmp_path / "probe_app.py"
    script.write_text(APP)
    return subprocess.run([sys.executable, str(script), "output=x", f"hydra.run.dir={tmp_path / 'run'}", *overrides],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_the_run_function_gets_the_typed_job_and_its_module_names_the_log(tmp_path):
    proc = run_app(tmp_path, "rows=7")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "job SynthConfig 7" in proc.stdout
    # Hydra names the job after the module defining `run` (so recsys-train still writes train.log)
    assert "a line for the job's log" in (tmp_path / "run" / "probe_app.log").read_text()


def test_the_schema_is_stored_so_a_misspelt_key_fails_naming_it(tmp_path):
    proc = run_app(tmp_path, "rowz=7")
    assert proc.returncode != 0 and "rowz" in proc.stderr
    assert "job" not in proc.stdout
