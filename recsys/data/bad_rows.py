"""Bad input: the errors an ingest raises, and the log that counts rejected lines by reason.

Bad input never crashes an ingest and never disappears silently: each rejected line is counted
by reason and the first few are kept with file, line and text (``stats.json``); too many bad
rows is a warning naming the main reason; a run with no good row at all is an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from recsys.data import raw


class BadRowError(ValueError):
    """A bad input line (or damaged file) met with ``on_bad_row=fail``."""


class EmptyDatasetError(ValueError):
    """The input held no good row (every row bad, or no data at all): nothing is written."""


class BadRowLog:
    """Counts rejected lines by reason, keeps the first examples, raises in ``fail`` mode."""

    def __init__(self, fail: bool, max_examples: int) -> None:
        self.fail = fail
        self.max_examples = max_examples
        self.by_reason: Counter[str] = Counter()
        self.examples: list[dict] = []
        self.file_issues: list[dict] = []

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())

    def rows(self, path: Path, bad: list[raw.BadRow]) -> None:
        """Record bad lines of ``path`` (in line order)."""
        if not bad:
            return
        if self.fail:
            self._raise(path, bad[0].line, bad[0].reason, bad[0].feature, bad[0].text)
        for row in bad:
            self.by_reason[row.reason] += 1
            if len(self.examples) < self.max_examples:
                example = {"file": str(path), "line": row.line, "reason": row.reason, "text": row.text}
                if row.feature:
                    example["feature"] = row.feature
                self.examples.append(example)

    def file_issue(self, path: Path, line: int, reason: str) -> None:
        """A problem with a file that costs no line (empty file, gzip cut at a line end)."""
        if self.fail:
            self._raise(path, line, reason, None, "")
        self.file_issues.append({"file": str(path), "line": line, "reason": reason})

    @staticmethod
    def _raise(path: Path, line: int, reason: str, feature: str | None, text: str) -> None:
        where = f" in column {feature}" if feature else ""
        raise BadRowError(f"{path}:{line}: {reason}{where}: {text[:raw.BAD_TEXT_CHARS]!r}")


def no_rows_message(rows_in: int, bad: BadRowLog, files: list[Path]) -> str:
    where = f"{len(files)} input file(s) ({', '.join(str(p) for p in files[:3])}{', ...' if len(files) > 3 else ''})"
    if rows_in == 0:
        issues = ", ".join(f"{i['reason']} {i['file']}" for i in bad.file_issues)
        return f"no data rows in {where}{': ' + issues if issues else ''}; nothing written"
    reason, count = bad.by_reason.most_common(1)[0]
    example = next((e for e in bad.examples if e["reason"] == reason), None)
    at = f"; first at {example['file']}:{example['line']}: {example['text'][:120]!r}" if example else ""
    return (f"all {rows_in} rows of {where} are bad (main reason {reason}: {count} rows{at}); "
            "nothing written. Is the schema right for these files?")


def report_bad(stats, max_fraction: float, log: logging.Logger) -> None:
    """A warning naming the main reason above ``max_fraction`` bad rows (or any file issue),
    else an info line when some rows were skipped."""
    if not (stats.bad_rows or stats.file_issues):
        return
    reasons = ", ".join(f"{k}={v}" for k, v in stats.bad_rows_by_reason.items())
    issues = ", ".join(f"{i['reason']} {i['file']}" for i in stats.file_issues)
    fraction = stats.bad_rows / max(stats.rows_in, 1)
    main = max(stats.bad_rows_by_reason.items(), key=lambda kv: kv[1])[0] if stats.bad_rows else None
    too_many = fraction > max_fraction
    log.log(logging.WARNING if too_many or issues else logging.INFO,
            "skipped %d bad rows of %d (%.2f%%%s; %s)%s; first examples in stats.json", stats.bad_rows, stats.rows_in,
            100 * fraction, f", over max_bad_row_fraction {max_fraction:g}, mostly {main}" if too_many else "",
            reasons or "none", f"; file issues: {issues}" if issues else "")
