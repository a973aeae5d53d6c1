"""A streaming parser of candle CSV files: bytes in, checked candles and bad rows out.

`CandleCsvParser.feed(chunk)` takes the body as it arrives, in chunks of any size,
decodes UTF-8 incrementally (a leading BOM is dropped), splits records on LF or CRLF
and returns the candles of the records it completed; `finish()` ends the file. Memory
is bounded by one chunk (and one line of at most MAX_LINE_CHARS) plus the duplicate
check's 16 bytes a row (two int64 arrays), never by the file. The rules (columns,
times, numbers) are in docs/imports.md.

Every problem is a `RowError` (line, column, reason): the first MAX_LISTED_ERRORS are
kept, all are counted. A header problem, undecodable bytes, an overlong line or an
unclosed quote end the parse (nothing after them can be read reliably); a bad row does
not, so one upload reports them all.
"""

from __future__ import annotations

import codecs
import csv
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import numpy as np

from utils.candles import timeframe_delta

MAX_LISTED_ERRORS = 100
# Numeric(20, 8): twelve digits before the point, eight after (the market's precision).
PLACES = 8
AMOUNT_LIMIT = Decimal(10) ** 12
MAX_TRADES = 2**31 - 1
# No candle row is near these; past them the file is refused rather than buffered.
MAX_LINE_CHARS = 64 * 1024
MAX_RECORD_LINES = 16
# An epoch number below 10^11 is seconds (10^11 s is the year 5138), from 10^11 up to
# 10^14 milliseconds (10^11 ms is March 1973). Larger ones (microseconds) are refused.
EPOCH_MS_FROM = 10**11
EPOCH_LIMIT = 10**14

TIME_COLUMNS = ("open_time", "timestamp", "time", "date")
REQUIRED_COLUMNS = ("open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("quote_volume", "trades_count")

_QUANTUM = Decimal(1).scaleb(-PLACES)
_ZERO = Decimal(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_LAST_OPEN = datetime.max.replace(tzinfo=UTC)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RowError:
    """One refusal: the file's line (1 is the header), the column (None for the whole
    row or file) and why."""

    line: int
    column: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedCandle:
    line: int
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    trades: int | None


class _BadValue(ValueError):
    """A field that does not parse; the message is the reason shown to the user."""


def parse_time(text: str, timeframe: str) -> datetime:
    """The UTC open time `text` names, aligned to `timeframe`; _BadValue otherwise."""
    if not text:
        raise _BadValue("empty")
    if text.isascii() and text.isdigit():
        number = int(text)
        if number >= EPOCH_LIMIT:
            raise _BadValue(f"{text} is too large for epoch seconds or milliseconds")
        moment = _EPOCH + (
            timedelta(milliseconds=number) if number >= EPOCH_MS_FROM else timedelta(seconds=number)
        )
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _BadValue(
                f"{text!r} is not a time: ISO 8601 with a zone, or epoch seconds or milliseconds"
            ) from None
        if moment.tzinfo is None:
            if not _DATE_ONLY.fullmatch(text):
                raise _BadValue(f"{text!r} has no time zone: add Z or an offset such as +00:00")
            moment = moment.replace(tzinfo=UTC)  # a date alone is its midnight UTC
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise _BadValue(f"{text!r} is out of range") from None
    delta = timeframe_delta(timeframe)
    if moment > _LAST_OPEN - delta:
        raise _BadValue(f"{text!r} is out of range")
    if (moment - _EPOCH) % delta:  # what utils.candles.align checks, without the floor
        raise _BadValue(f"{moment.isoformat()} is not the start of a {timeframe} candle")
    return moment


def parse_amount(text: str) -> Decimal:
    """`text` as an exact decimal of at most 12 + 8 digits; _BadValue otherwise."""
    if not text:
        raise _BadValue("empty")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _BadValue(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise _BadValue(f"{text!r} is not a finite number")
    if value.copy_abs() >= AMOUNT_LIMIT:
        raise _BadValue(f"{text} is too large: at most 12 digits before the point")
    if value != value.quantize(_QUANTUM):
        raise _BadValue(f"{text} has more than {PLACES} decimal places")
    return value if value else _ZERO  # -0 is stored as 0


def parse_trades(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _BadValue(f"{text!r} is not a whole number >= 0")
    count = int(text)
    if count > MAX_TRADES:
        raise _BadValue(f"{text} is too large (at most {MAX_TRADES})")
    return count


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each known column is in a row; unknown columns are ignored."""

    width: int
    time: int
    time_name: str
    required: tuple[int, ...]
    quote_volume: int | None
    trades: int | None


def _layout(names: list[str]) -> _Layout | list[str]:
    """The layout of a header row, or the reasons it is refused."""
    problems: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen and name in (*TIME_COLUMNS, *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
            problems.append(f"column {name!r} appears twice")
        seen.add(name)
    times = [n for n in TIME_COLUMNS if n in seen]
    if not times:
        problems.append(f"no time column: name one {', '.join(TIME_COLUMNS)}")
    elif len(times) > 1:
        problems.append(f"more than one time column: {', '.join(times)}")
    problems.extend(f"no {name!r} column" for name in REQUIRED_COLUMNS if name not in seen)
    if problems:
        return problems
    index = {name: i for i, name in reversed(list(enumerate(names)))}
    return _Layout(
        width=len(names),
        time=index[times[0]],
        time_name=times[0],
        required=tuple(index[n] for n in REQUIRED_COLUMNS),
        quote_volume=index.get("quote_volume"),
        trades=index.get("trades_count"),
    )


def _optional(fields: list[str], index: int | None, parse: Callable[[str], T]) -> T | None:
    # An optional column may be absent, or empty on a row (unknown).
    if index is None or not fields[index]:
        return None
    return parse(fields[index])


class CandleCsvParser:
    """Parses one file of one timeframe's candles, fed in chunks (see the module doc)."""

    def __init__(self, timeframe: str, *, max_listed: int = MAX_LISTED_ERRORS) -> None:
        timeframe_delta(timeframe)
        self.timeframe = timeframe
        self.max_listed = max_listed
        self.errors: list[RowError] = []
        self.error_count = 0
        self.rows = 0
        self.first_open: datetime | None = None
        self.last_open: datetime | None = None
        self._bad_lines: set[int] = set()
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._tail = ""
        self._line = 0  # physical lines completed so far
        self._record: list[str] = []  # physical lines of a record whose quotes are open
        self._record_line = 0
        self._layout: _Layout | None = None
        self._stopped = False
        self._times = array("q")  # epoch microseconds, for the duplicate check
        self._lines = array("q")
        self._increasing = True

    @property
    def bad_rows(self) -> int:
        return len(self._bad_lines)

    @property
    def span(self) -> tuple[datetime, datetime]:
        """The first and the last open time read; ValueError before any candle."""
        if self.first_open is None or self.last_open is None:
            raise ValueError("no candle read")
        return self.first_open, self.last_open

    def feed(self, chunk: bytes) -> list[ParsedCandle]:
        """The candles of the records this chunk completes (none once stopped)."""
        if self._stopped:
            return []
        try:
            text = self._tail + self._decoder.decode(chunk)
        except UnicodeDecodeError as e:
            # The lines before the bad byte are not read: the file is refused anyway.
            before = e.object[: e.start].count(b"\n") if isinstance(e.object, bytes) else 0
            self._stop(self._line + 1 + before, "the file is not UTF-8 text")
            return []
        lines = text.split("\n")
        self._tail = lines.pop()
        candles = self._records(lines)
        if len(self._tail) > MAX_LINE_CHARS and not self._stopped:
            # Memory stays one chunk's worth even for a file with no line breaks.
            self._stop(self._line + 1, f"a line longer than {MAX_LINE_CHARS} characters")
        return candles

    def finish(self) -> list[ParsedCandle]:
        """The candles of the last record, then the file-wide checks (header present,
        at least one row, no open_time twice)."""
        candles: list[ParsedCandle] = []
        if not self._stopped:
            try:
                rest = self._tail + self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self._stop(self._line + 1, "the file is not UTF-8 text")
                rest = ""
            self._tail = ""
            candles = self._records([rest] if rest else [])
            if self._record and not self._stopped:
                self._error(self._record_line, None, "a quoted field is never closed")
        if self._layout is None and not self._stopped:
            self._error(1, None, "the file is empty: a header row is required")
        elif self.rows == 0 and self.error_count == 0:
            self._error(self._line + 1, None, "the file has no candle rows")
        self._check_duplicates()
        self.errors.sort(key=lambda e: e.line)
        return candles

    def _records(self, lines: list[str]) -> list[ParsedCandle]:
        candles: list[ParsedCandle] = []
        for physical in lines:
            self._line += 1
            if self._record:
                self._record.append(physical)
                if physical.count('"') % 2 == 0:
                    if len(self._record) > MAX_RECORD_LINES:
                        self._stop(self._record_line, "a quoted field is never closed")
                        break
                    continue
                record, line = "\n".join(self._record), self._record_line
                self._record = []
            elif physical.count('"') % 2:
                self._record, self._record_line = [physical], self._line
                continue
            else:
                record, line = physical, self._line
            if self._stopped:
                break
            candle = self._record_of(line, record)
            if candle is not None:
                candles.append(candle)
        return candles

    def _record_of(self, line: int, record: str) -> ParsedCandle | None:
        if not record.strip():
            return None  # blank lines (a trailing newline or two) carry nothing
        if '"' in record:
            try:
                fields = next(csv.reader([record]))
            except csv.Error as e:
                self._error(line, None, f"malformed CSV: {e}")
                return None
            fields = [f.strip() for f in fields]
        else:
            fields = [f.strip() for f in record.rstrip("\r").split(",")]
        if self._layout is None:
            layout = _layout([f.lower() for f in fields])
            if isinstance(layout, list):
                for reason in layout:
                    self._error(line, None, reason)
                self._stopped = True
                return None
            self._layout = layout
            return None
        return self._candle(line, fields, self._layout)

    def _candle(self, line: int, fields: list[str], layout: _Layout) -> ParsedCandle | None:
        if len(fields) != layout.width:
            self._error(line, None, f"{len(fields)} fields where the header has {layout.width}")
            return None
        open_, high, low, close, volume = layout.required
        try:
            # The usual row parses whole; only a bad one is read again, field by field.
            candle = ParsedCandle(
                line,
                self._time(fields[layout.time]),
                parse_amount(fields[open_]),
                parse_amount(fields[high]),
                parse_amount(fields[low]),
                parse_amount(fields[close]),
                parse_amount(fields[volume]),
                _optional(fields, layout.quote_volume, parse_amount),
                _optional(fields, layout.trades, parse_trades),
            )
        except _BadValue:
            self._report_fields(line, fields, layout)
            return None
        if not self._consistent(candle):
            return None
        self._seen(line, candle.open_time)
        return candle

    def _report_fields(self, line: int, fields: list[str], layout: _Layout) -> None:
        """An error for each field of the row that does not parse."""
        self._field(line, layout.time_name, fields[layout.time], self._time)
        for name, i in zip(REQUIRED_COLUMNS, layout.required, strict=True):
            self._field(line, name, fields[i], parse_amount)
        for name, index, parse in (
            ("quote_volume", layout.quote_volume, parse_amount),
            ("trades_count", layout.trades, parse_trades),
        ):
            if index is not None and fields[index]:
                self._field(line, name, fields[index], parse)

    def _time(self, text: str) -> datetime:
        return parse_time(text, self.timeframe)

    def _field(self, line: int, column: str, text: str, parse: Callable[[str], T]) -> T | None:
        try:
            return parse(text)
        except _BadValue as e:
            self._error(line, column, str(e))
            return None

    def _consistent(self, c: ParsedCandle) -> bool:
        before = self.error_count
        for name, price in (("open", c.open), ("high", c.high), ("low", c.low), ("close", c.close)):
            if price <= 0:
                self._error(c.line, name, f"{price} is not a positive price")
        if c.volume < 0:
            self._error(c.line, "volume", f"{c.volume} is negative")
        if c.quote_volume is not None and c.quote_volume < 0:
            self._error(c.line, "quote_volume", f"{c.quote_volume} is negative")
        if self.error_count == before:
            if c.low > min(c.open, c.close):
                self._error(c.line, "low", f"{c.low} is above the open or the close")
            if c.high < max(c.open, c.close):
                self._error(c.line, "high", f"{c.high} is below the open or the close")
        return self.error_count == before

    def _seen(self, line: int, open_time: datetime) -> None:
        micros = (open_time - _EPOCH) // timedelta(microseconds=1)
        if self._times and micros <= self._times[-1]:
            self._increasing = False
        self._times.append(micros)
        self._lines.append(line)
        self.rows += 1
        if self.first_open is None or open_time < self.first_open:
            self.first_open = open_time
        if self.last_open is None or open_time > self.last_open:
            self.last_open = open_time

    def _check_duplicates(self) -> None:
        # Any order is accepted; a sorted file (the usual case) needs no sort here.
        if self._increasing or not self._times:
            return
        times = np.frombuffer(self._times, dtype=np.int64)
        order = np.argsort(times, kind="stable")  # stable: the earlier line comes first
        ordered = times[order]
        for i in np.flatnonzero(ordered[1:] == ordered[:-1]):
            first, again = self._lines[order[i]], self._lines[order[i + 1]]
            self._error(int(again), "open_time", f"the same open time as line {first}")

    def _error(self, line: int, column: str | None, reason: str) -> None:
        self.error_count += 1
        self._bad_lines.add(line)
        if len(self.errors) < self.max_listed:
            self.errors.append(RowError(line, column, reason))

    def _stop(self, line: int, reason: str) -> None:
        self._error(line, None, reason)
        self._stopped = True
