"""Library chatter stays out of the logs unless asked for (RECSYS_LIBRARY_LOG_LEVEL)."""

import logging
import warnings

import pytest

from recsys.core.logging import LEVEL_ENV, LibraryFilter, quiet_libraries


@pytest.fixture
def restore_root_filters():
    root = logging.getLogger()
    before = list(root.filters)
    yield
    root.filters[:] = before


def fbgemm_lines(caplog, full_tables) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        full_tables({"C1": 100, "C2": 50}, 8)  # FBGEMM logs its table arguments at INFO, on the root logger
        logging.getLogger("recsys.test").info("recsys's own line")
    assert "recsys's own line" in caplog.text
    return [r.getMessage() for r in caplog.records if "fbgemm_gpu" in r.pathname or r.name.startswith("fbgemm_gpu")]


def test_fbgemm_info_lines_are_dropped_and_can_be_switched_back_on(caplog, full_tables, restore_root_filters, monkeypatch):
    quiet_libraries("INFO")
    assert fbgemm_lines(caplog, full_tables), "FBGEMM no longer logs at INFO: this test checks nothing"
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    quiet_libraries()
    assert fbgemm_lines(caplog, full_tables) == []
    monkeypatch.setenv(LEVEL_ENV, "info")
    quiet_libraries()
    assert fbgemm_lines(caplog, full_tables)
    assert sum(isinstance(f, LibraryFilter) for f in logging.getLogger().filters) == 1


def test_a_bad_level_names_the_variable(monkeypatch):
    monkeypatch.setenv(LEVEL_ENV, "LOUD")
    with pytest.raises(ValueError, match=f"{LEVEL_ENV}='LOUD' is not a logging level"):
        quiet_libraries()


@pytest.mark.parametrize(("level", "shown"), [("WARNING", ["recsys's own"]), ("INFO", ["torch's, on torchrec's call", "recsys's own"])])
def test_the_libraries_deprecation_notices_are_left_out_unless_asked_for(restore_root_filters, level, shown):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries(level)
        warnings.warn_explicit("torch's, on torchrec's call", FutureWarning, "c10d_logger.py", 83, module="torch.distributed.c10d_logger")
        warnings.warn_explicit("recsys's own", FutureWarning, "loop.py", 1, module="recsys.train.loop")
    assert [str(w.message) for w in seen] == shown


def test_the_libraries_deprecation_notices_can_be_switched_back_on(restore_root_filters):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        quiet_libraries("INFO")
        warnings.warn_explicit("torch's, on torchrec's call", FutureWarning, "c10d_logger.py", 83, module="torch.distributed.c10d_logger")
    assert [str(w.message) for w in seen] == ["torch's, on torchrec's call"]
    assert logging.getLogger("torch.fx._symbolic_trace").level == logging.NOTSET
