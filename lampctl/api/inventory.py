"""``lampctl.status`` and ``lampctl.stats``: what ``lampctl status`` and ``lampctl stats`` do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lampctl import settings
from lampctl.arguments import checked_arguments
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import InputError

if TYPE_CHECKING:
    from lampctl.inventory import StatsRow, StatusRow


@dataclass
class StatusReport:
    rows: list[StatusRow]

    @property
    def problems(self) -> int:
        """Rows that need attention (a stale ranking, a changed file, a missing shard...)."""
        return sum(bool(r.problems) for r in self.rows)

    @property
    def not_built(self) -> int:
        """Rows waiting for a build (LaMP-6 before ``avocado build``): noted, not counted."""
        return sum(bool(r.notes) for r in self.rows)


@checked_arguments
def status(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    data_dir: Path | str | None = None,
    verify: bool = False,
    config: Path | str | None = None,
) -> StatusReport:
    """Each (task, split, set) of the data dir: its files, whether the download verifies and
    whether each derived file is up to date (``verify``: every sha256 computed again)."""
    from lampctl.catalog.datadir import check_data_dir
    from lampctl.inventory import status as status_rows
    from lampctl.retrieval.encoder import encoder_config

    found, folder = registry(config), settings.data_dir(data_dir)
    check_data_dir(found, folder)
    rows = status_rows(
        found, folder, list(tasks), list(splits), list(sets), encoder_config(found), rehash=verify
    )
    return StatusReport(rows)


@checked_arguments
def stats(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
) -> tuple[list[StatsRow], list[str]]:
    """The LaMP paper's Table 1 numbers per task, split and set present, and the sets left out
    (not built yet) with why."""
    from lampctl.catalog.datadir import check_data_dir
    from lampctl.inventory import stats as stats_rows

    found, folder = registry(config), settings.data_dir(data_dir)
    check_data_dir(found, folder)
    left_out: list[str] = []
    rows = stats_rows(found, folder, list(tasks), list(splits), list(sets), left_out)
    if not rows:
        why = f" ({'; '.join(left_out)})" if left_out else ""
        raise InputError(f"{folder}: no questions files for the chosen tasks{why}")
    return rows, left_out
