"""The candle CSV parser: every refusal named by line and column, the file forms it
takes (BOM, CRLF, quotes, epoch seconds or milliseconds, any chunking), and a round
trip of generated valid candles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.files.csv_candles import CandleCsvParser, ParsedCandle, RowError

D = Decimal
HEADER = "open_time,open,high,low,close,volume"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def parse(
    text: str | bytes, timeframe: str = "1m", chunk: int = 0
) -> tuple[list[ParsedCandle], CandleCsvParser]:
    data = text.encode() if isinstance(text, str) else text
    parser = CandleCsvParser(timeframe)
    candles: list[ParsedCandle] = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        candles += parser.feed(data[i : i + step])
    candles += parser.finish()
    return candles, parser


def errors_of(text: str, timeframe: str = "1m") -> list[tuple[int, str | None]]:
    _, parser = parse(text, timeframe)
    return [(e.line, e.column) for e in parser.errors]


def one_error(row: str, header: str = HEADER) -> RowError:
    padding = "," * (header.count(",") - HEADER.count(","))
    _, parser = parse(f"{header}\n2024-01-01T00:00:00Z,1,2,0.5,1.5,3{padding}\n{row}\n")
    assert parser.error_count == 1, parser.errors
    assert parser.errors[0].line == 3
    return parser.errors[0]


class TestGoodFiles:
    def test_reads_every_column_exactly(self) -> None:
        candles, parser = parse(
            "open_time,open,high,low,close,volume,quote_volume,trades_count\n"
            "2024-01-01T00:00:00Z,42000.12345678,42100,41900,42050.5,12.5,525000.25,17\n"
        )
        assert candles == [
            ParsedCandle(
                2,
                T0,
                D("42000.12345678"),
                D(42100),
                D(41900),
                D("42050.5"),
                D("12.5"),
                D("525000.25"),
                17,
            )
        ]
        assert parser.error_count == 0
        assert parser.span == (T0, T0)

    def test_a_bom_and_crlf_lines(self) -> None:
        text = f"\ufeff{HEADER}\r\n2024-01-01T00:00:00Z,1,2,0.5,1.5,3\r\n"
        candles, parser = parse(text.encode("utf-8"))
        assert [c.open_time for c in candles] == [T0]
        assert parser.error_count == 0

    def test_quoted_fields_and_a_quoted_header(self) -> None:
        text = (
            '"Open_Time","open","high","low","close","volume"\n'
            '"2024-01-01T00:00:00Z","1","2","0.5","1.5","3"\n'
        )
        candles, _ = parse(text)
        assert candles[0].low == D("0.5")

    def test_epoch_seconds_and_milliseconds_mean_the_same_minute(self) -> None:
        seconds = int(T0.timestamp())
        candles, parser = parse(
            f"timestamp,open,high,low,close,volume\n{seconds},1,1,1,1,0\n"
            f"{(seconds + 60) * 1000},1,1,1,1,0\n"
        )
        assert parser.error_count == 0
        assert [c.open_time for c in candles] == [T0, T0 + timedelta(minutes=1)]

    def test_a_date_alone_is_midnight_utc_and_an_offset_is_converted(self) -> None:
        candles, _ = parse(
            "date,open,high,low,close,volume\n2024-01-01,1,1,1,1,0\n"
            "2024-01-02T02:00:00+02:00,1,1,1,1,0\n",
            "1d",
        )
        assert [c.open_time for c in candles] == [T0, T0 + timedelta(days=1)]

    def test_any_order_unknown_columns_blank_lines_and_spaces(self) -> None:
        candles, parser = parse(
            "Volume, Close ,symbol,low,high,open,TIME\n\n"
            "3, 1.5 ,X,0.5,2,1,2024-01-01T00:01:00Z\n"
            "3,1.5,X,0.5,2,1,2024-01-01T00:00:00Z\n\n"
        )
        assert parser.error_count == 0
        assert [c.line for c in candles] == [3, 4]

    @pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
    def test_chunks_of_any_size_give_the_same_candles(self, chunk: int) -> None:
        text = (
            f'\ufeff{HEADER}\r\n"2024-01-01T00:00:00Z",1,2,0.5,1.5,3\r\n'
            "2024-01-01T00:01:00Z,1,1,1,1,0"
        )
        assert parse(text.encode(), chunk=chunk)[0] == parse(text.encode())[0]

    def test_multibyte_characters_split_across_chunks(self) -> None:
        text = f"{HEADER},note\n2024-01-01T00:00:00Z,1,2,0.5,1.5,3,€uro\n".encode()
        candles, parser = parse(text, chunk=1)
        assert parser.error_count == 0
        assert len(candles) == 1


class TestRefusals:
    @pytest.mark.parametrize(
        ("row", "column", "reason"),
        [
            ("2024-01-01T00:01:00,1,1,1,1,0", "open_time", "no time zone"),
            ("2024-01-01T00:01:30Z,1,1,1,1,0", "open_time", "not the start of a 1m candle"),
            ("yesterday,1,1,1,1,0", "open_time", "not a time"),
            ("100000000000000,1,1,1,1,0", "open_time", "too large"),
            (",1,1,1,1,0", "open_time", "empty"),
            ("2024-01-01T00:01:00Z,abc,1,1,1,0", "open", "not a number"),
            ("2024-01-01T00:01:00Z,NaN,1,1,1,0", "open", "not a finite number"),
            ("2024-01-01T00:01:00Z,1,Infinity,1,1,0", "high", "not a finite number"),
            ("2024-01-01T00:01:00Z,1,1,1,1.000000001,0", "close", "more than 8 decimal places"),
            ("2024-01-01T00:01:00Z,1,1000000000000,1,1,0", "high", "too large"),
            ("2024-01-01T00:01:00Z,0,1,1,1,0", "open", "not a positive price"),
            ("2024-01-01T00:01:00Z,1,1,-1,1,0", "low", "not a positive price"),
            ("2024-01-01T00:01:00Z,1,1,1,1,-0.5", "volume", "negative"),
            ("2024-01-01T00:01:00Z,1,1,1,1,", "volume", "empty"),
            ("2024-01-01T00:01:00Z,1,2,1.5,1,0", "low", "above the open or the close"),
            ("2024-01-01T00:01:00Z,1,1.5,0.5,2,0", "high", "below the open or the close"),
        ],
    )
    def test_each_reason_names_the_line_and_column(
        self, row: str, column: str, reason: str
    ) -> None:
        error = one_error(row)
        assert error.column == column
        assert reason in error.reason

    def test_optional_columns_are_checked_when_present(self) -> None:
        header = f"{HEADER},quote_volume,trades_count"
        assert one_error("2024-01-01T00:01:00Z,1,1,1,1,0,-1,", header).column == "quote_volume"
        assert one_error("2024-01-01T00:01:00Z,1,1,1,1,0,,2.5", header).column == "trades_count"
        assert one_error("2024-01-01T00:01:00Z,1,1,1,1,0,,-3", header).column == "trades_count"
        candles, parser = parse(f"{header}\n2024-01-01T00:01:00Z,1,1,1,1,0,,\n")
        assert parser.error_count == 0
        assert (candles[0].quote_volume, candles[0].trades) == (None, None)

    def test_a_row_of_the_wrong_width(self) -> None:
        error = one_error("2024-01-01T00:01:00Z,1,1,1,1")
        assert (error.column, error.reason) == (None, "5 fields where the header has 6")

    def test_every_bad_field_of_a_row_is_reported(self) -> None:
        assert errors_of(f"{HEADER}\nnope,x,1,1,1,y\n") == [
            (2, "open_time"),
            (2, "open"),
            (2, "volume"),
        ]

    def test_a_duplicate_open_time_names_both_lines_in_any_order(self) -> None:
        _, parser = parse(
            f"{HEADER}\n2024-01-01T00:02:00Z,1,1,1,1,0\n2024-01-01T00:00:00Z,1,1,1,1,0\n"
            f"{int(T0.timestamp()) + 120},1,1,1,1,0\n"
        )
        assert parser.errors == [RowError(4, "open_time", "the same open time as line 2")]

    def test_sorted_duplicates_are_caught_too(self) -> None:
        assert errors_of(
            f"{HEADER}\n2024-01-01T00:00:00Z,1,1,1,1,0\n2024-01-01T00:00:00Z,1,1,1,1,0\n"
        ) == [(3, "open_time")]

    def test_the_listed_errors_are_capped_and_all_are_counted(self) -> None:
        rows = "".join(f"2024-01-01T00:{m:02d}:00Z,0,1,1,1,0\n" for m in range(60)) * 3
        parser = CandleCsvParser("1m", max_listed=100)
        parser.feed(f"{HEADER}\n{rows}".encode())
        parser.finish()
        assert len(parser.errors) == 100
        assert parser.error_count == 180
        assert parser.bad_rows == 180
        assert [e.line for e in parser.errors] == list(range(2, 102))

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ("open,high,low,close,volume", "no time column"),
            ("time,date,open,high,low,close,volume", "more than one time column"),
            ("time,open,high,low,close", "no 'volume' column"),
            ("time,open,open,high,low,close,volume", "column 'open' appears twice"),
        ],
    )
    def test_a_bad_header_stops_at_line_one(self, header: str, reason: str) -> None:
        _, parser = parse(f"{header}\n2024-01-01T00:00:00Z,1,1,1,1,0\n")
        assert [(e.line, e.column) for e in parser.errors] == [(1, None)]
        assert reason in parser.errors[0].reason

    def test_an_empty_file_and_a_header_alone(self) -> None:
        assert "a header row is required" in parse("")[1].errors[0].reason
        assert "a header row is required" in parse("\n\n")[1].errors[0].reason
        _, parser = parse(f"{HEADER}\n")
        assert parser.errors == [RowError(2, None, "the file has no candle rows")]

    def test_bytes_that_are_not_utf8(self) -> None:
        _, parser = parse(f"{HEADER}\n2024-01-01T00:00:00Z,1,1,1,1,0\n".encode() + b"\xff\xfe,1\n")
        assert parser.errors == [RowError(3, None, "the file is not UTF-8 text")]

    def test_an_unclosed_quote(self) -> None:
        _, parser = parse(
            f'{HEADER}\n2024-01-01T00:00:00Z,1,1,1,1,0\n"2024-01-01T00:01:00Z,1,1,1,1,0\n'
        )
        assert parser.errors == [RowError(3, None, "a quoted field is never closed")]


prices = st.decimals(
    min_value=D("0.00000001"), max_value=D("999999999999.99999999"), places=8, allow_nan=False
)


@st.composite
def candle_rows(
    draw: st.DrawFn,
) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    minutes = draw(st.lists(st.integers(0, 10**7), min_size=1, max_size=30, unique=True))
    rows = []
    for minute in minutes:
        a, b, c, d = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
        open_, close = draw(st.permutations([b, c]))
        volume = draw(st.decimals(min_value=0, max_value=D("1e11"), places=8))
        rows.append((T0 + timedelta(minutes=minute), open_, d, a, close, volume))
    return rows


class TestRoundTrip:
    @settings(max_examples=50, deadline=None)
    @given(rows=candle_rows(), epoch=st.booleans(), crlf=st.booleans(), chunk=st.integers(1, 97))
    def test_written_candles_read_back_exactly(
        self,
        rows: list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]],
        epoch: bool,
        crlf: bool,
        chunk: int,
    ) -> None:
        end = "\r\n" if crlf else "\n"

        def when(t: datetime) -> str:
            return str(int(t.timestamp()) * 1000) if epoch else t.isoformat()

        text = (
            HEADER
            + end
            + "".join(f"{when(t)},{o},{h},{lo},{c},{v}{end}" for t, o, h, lo, c, v in rows)
        )
        candles, parser = parse(text, chunk=chunk)
        assert parser.errors == []
        assert [(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in candles] == rows


class TestBoundedBuffers:
    def test_a_file_without_line_breaks_is_refused_not_buffered(self) -> None:
        parser = CandleCsvParser("1m")
        parser.feed(f"{HEADER}\n".encode())
        for _ in range(20):
            parser.feed(b"1" * 4096)
        parser.finish()
        assert parser.errors == [RowError(2, None, "a line longer than 65536 characters")]

    def test_a_quote_left_open_over_many_lines_is_refused(self) -> None:
        rows = '2024-01-01T00:00:00Z,"1,1,1,1,0\n' + "2024-01-01T00:01:00Z,1,1,1,1,0\n" * 40
        _, parser = parse(f"{HEADER}\n{rows}")
        assert parser.errors == [RowError(2, None, "a quoted field is never closed")]
