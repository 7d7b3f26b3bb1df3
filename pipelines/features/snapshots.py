"""Which daily snapshots a build covers, and the Delta predicates that replace exactly those.

A snapshot is a UTC midnight S; it sees events with timestamp < S. Days are counted as integers since the Unix
epoch ("epoch days") so that "the 28 days before S" is plain integer arithmetic in Spark: an event on day d is
visible from snapshot d + 1 on, and S's 28-day window is days [s − 28, s − 1].
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

EPOCH = dt.date(1970, 1, 1)


def epoch_day(day: dt.date) -> int:
    return (day - EPOCH).days


def from_epoch_day(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=n)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _literal(day: dt.date) -> str:
    """Timestamp literal delta-rs (DataFusion) compares with a UTC timestamp column."""
    return midnight(day).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SnapshotRange:
    """Snapshots ``start``..``end`` (dates of the UTC midnights, both inclusive).

    ``origin`` is the first snapshot of a full build (the day after the first impression). It does not depend
    on the range asked for, so a row's snapshot never depends on how a build was split: a member created
    before the data starts gets their first profile row at ``origin``, in a full build and a one-day build
    alike.
    ``full`` builds own everything before ``end`` in the tables (their predicates have no lower bound).
    """

    start: dt.date
    end: dt.date
    origin: dt.date
    full: bool

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"snapshot start {self.start} is after end {self.end}")

    @property
    def start_day(self) -> int:
        return epoch_day(self.start)

    @property
    def end_day(self) -> int:
        return epoch_day(self.end)

    @property
    def origin_day(self) -> int:
        return epoch_day(self.origin)

    @property
    def cutoff(self) -> dt.datetime:
        """Nothing at or after this instant is read: the last snapshot's time."""
        return midnight(self.end)

    def days(self) -> list[dt.date]:
        return [from_epoch_day(d) for d in range(self.start_day, self.end_day + 1)]

    def timestamps(self) -> list[dt.datetime]:
        return [midnight(d) for d in self.days()]

    def predicate(self, *, column: str = "event_timestamp", lag_days: int = 0) -> str:
        """Delta predicate matching the rows this build writes, so a re-run replaces them.

        Snapshot tables hold rows at S in [start, end]. post_content's rows sit at created_at instead and
        belong to the first snapshot after it, i.e. [start − 1 day, end): pass ``lag_days=1``.
        """
        upper = self.end + dt.timedelta(days=1 - lag_days)
        clause = f"{column} < '{_literal(upper)}'"
        if self.full:
            return clause
        lower = self.start - dt.timedelta(days=lag_days)
        return f"{column} >= '{_literal(lower)}' AND {clause}"


def resolve_snapshots(
    first_impression: dt.datetime,
    last_impression: dt.datetime,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> SnapshotRange:
    """Default: every day from the day after the first impression through the day after the last one."""
    origin = first_impression.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    last = last_impression.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    return SnapshotRange(start=start or origin, end=end or last, origin=origin, full=start is None)
