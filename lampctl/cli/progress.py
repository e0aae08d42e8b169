"""What a progress line says: counts, a rate (items per second, or seconds per item when
slow), an ETA from a smoothed rate, and clock times."""

from __future__ import annotations


def clock(seconds: float) -> str:
    """3725 -> '1:02:05', 65 -> '1:05'."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate_words(rate: float, unit: str) -> str:
    """'310 questions/s', or below one a second the time one item takes: '4.2 s/question'
    (a slow CPU encoder would otherwise show '0/s')."""
    if rate >= 1:
        return f"{rate:,.0f} {unit}/s" if unit else f"{rate:,.0f}/s"
    one = unit.removesuffix("s") if unit.endswith("s") else unit
    return f"{1 / rate:,.1f} s/{one}" if one else f"{1 / rate:,.1f} s/item"


def progress_line(
    label: str,
    done: int,
    total: int | None,
    unit: str,
    elapsed: float,
    rate: float | None = None,
) -> str:
    """'LaMP-4 dev: 1,200/4,500 questions (27%), 310/s, ETA 0:11': what a log line says.
    ``rate``: items per second to show and to reckon the ETA by (a smoothed one), else the
    mean since the start."""
    counted = total if total else done
    unit = unit.removesuffix("s") if counted == 1 and unit.endswith("s") else unit  # 1 user
    words = f"{label}: {done:,}" + (f"/{total:,}" if total else "") + f" {unit}"
    if total:
        words += f" ({100 * done / total:.0f}%)"
    if rate is None:
        rate = done / elapsed if elapsed > 0 else 0.0
    if rate > 0:
        words += ", " + (f"{rate:,.0f}/s" if rate >= 1 else rate_words(rate, unit))
        if total and done < total:
            words += f", ETA {clock((total - done) / rate)}"
    return words + (f", {clock(elapsed)} elapsed" if not total or done >= total else "")


class SmoothedRate:
    """Items per second, smoothed over the work so far: each new reading (the items done since
    the last one, over the time since) moves the estimate by a third, so one quick burst (a
    CPU encoder finishes a chunk of questions at once) does not swing the ETA from an hour
    to minutes."""

    WEIGHT = 1 / 3

    def __init__(self, now: float) -> None:
        self.rate: float | None = None
        self._last, self._done = now, 0

    def update(self, done: int, now: float) -> float | None:
        span = now - self._last
        if span <= 0 or done <= self._done:
            return self.rate
        recent = (done - self._done) / span
        self.rate = recent if self.rate is None else self.rate + self.WEIGHT * (recent - self.rate)
        self._last, self._done = now, done
        return self.rate
