"""Run-date arithmetic. The run date is the Airflow logical date; nothing reads the wall clock."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def parse_day(day: str) -> dt.date:
    return dt.date.fromisoformat(str(day)[:10])


def day_range(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class SplitDays:
    """Chronological split for run date D: train days < valid days < test days (ending at D)."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.train + self.valid + self.test

    def split_of(self, day: str) -> str:
        for name in ("train", "valid", "test"):
            if day in getattr(self, name):
                return name
        raise KeyError(day)


def split_days(run_date: str, train_days: int, valid_days: int, test_days: int) -> SplitDays:
    end = parse_day(run_date)
    days = day_range(end - dt.timedelta(days=train_days + valid_days + test_days - 1), end)
    return SplitDays(tuple(days[:train_days]), tuple(days[train_days:train_days + valid_days]),
                     tuple(days[train_days + valid_days:]))


def landing_days(spec, params) -> list[str]:
    """Days ingest lands for a run: the activity lookback, then the split window ending at D."""
    w = params.window
    split = split_days(params.date, w.train_days, w.valid_days, w.test_days)
    first = parse_day(split.all[0]) - dt.timedelta(days=spec.lookback_days)
    return day_range(first, parse_day(params.date))
