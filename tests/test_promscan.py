"""The exposition scanner: what it reads, what it skips, what it refuses.

prometheus-client's own parser is the oracle: for any well-formed exposition the
scanner must find exactly the wanted samples that parser finds, whichever path (the
whole-run fast path or the line-by-line one) each run takes.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import FIXTURES, fixture
from takhin_ws.sources.prometheus import scan as promscan
from takhin_ws.sources.prometheus.scan import ExpositionScanner, parse_exposition
from takhin_ws.sources.prometheus.series import Keys, Labels, Series, parse_labels
from takhin_ws.sources.prometheus.snapshot import READ_SAMPLES


def oracle(text: str, wanted: frozenset[str]) -> dict[str, dict[Labels, float]]:
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                labels = tuple(sorted(sample.labels.items()))
                series = out.setdefault(sample.name, {})
                series.pop(labels, None)
                series[labels] = float(sample.value)
    return out


def plain(result: dict[str, Series]) -> dict[str, dict[Labels, object]]:
    """Dicts, with NaN made comparable."""
    return {
        name: {k: "NaN" if math.isnan(v) else v for k, v in series.to_dict().items()}
        for name, series in result.items()
    }


def nan_safe(expected: dict[str, dict[Labels, float]]) -> dict[str, dict[Labels, object]]:
    return {
        name: {k: "NaN" if math.isnan(v) else v for k, v in series.items()}
        for name, series in expected.items()
    }


# --- the fixtures and real exporters, against the oracle ---


@pytest.mark.parametrize(
    "name", sorted(p.name for p in FIXTURES.glob("*.prom") if p.name != "truncated.prom")
)
def test_fixtures_read_as_prometheus_client_reads_them(name: str) -> None:
    text = fixture(name).decode()
    found = parse_exposition(text, READ_SAMPLES)
    assert found, "every fixture holds samples the source reads"
    assert plain(found) == nan_safe(oracle(text, READ_SAMPLES))


def test_prometheus_client_output() -> None:
    registry = CollectorRegistry()
    counter = Counter("takhin_produce_messages", "", ["topic", "partition"], registry=registry)
    counter.labels("orders", "0").inc(3)
    counter.labels('we"ird\\na}me ', "1").inc(0.5)
    histogram = Histogram(
        "takhin_produce_latency_seconds", "", ["topic"], buckets=(0.1, 1.0), registry=registry
    )
    histogram.labels("orders").observe(0.5)
    Gauge("go_goroutines", "", registry=registry).set(float("nan"))
    text = generate_latest(registry).decode()
    found = parse_exposition(text, READ_SAMPLES)
    assert set(found) == {
        "takhin_produce_messages_total",
        "takhin_produce_latency_seconds_bucket",
        "go_goroutines",
    }  # not the _created, _sum and _count samples
    assert found["takhin_produce_messages_total"].to_dict() == {
        (("partition", "0"), ("topic", "orders")): 3.0,
        (("partition", "1"), ("topic", 'we"ird\\na}me ')): 0.5,
    }
    assert found["takhin_produce_latency_seconds_bucket"].to_dict() == {
        (("le", "0.1"), ("topic", "orders")): 0.0,
        (("le", "1.0"), ("topic", "orders")): 1.0,
        (("le", "+Inf"), ("topic", "orders")): 1.0,
    }
    assert math.isnan(found["go_goroutines"].values[0])


# --- generated expositions, against the oracle ---

WANTED = frozenset({"takhin_a", "takhin_b_total", "takhin_h_bucket", "up"})
NAMES = ("takhin_a", "takhin_b_total", "takhin_h_bucket", "takhin_h_sum", "other_c", "up")
label_values = st.text(alphabet='ab }{,="\\\n\tz=-', max_size=6)
numbers = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e+06", "7.25e-05", "0"]),
)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


LABELS = st.dictionaries(st.sampled_from(["topic", "le", "g", "x_1"]), label_values)
ANY_NAME = st.sampled_from(NAMES)
STAMP = st.none() | st.integers(min_value=0, max_value=2**40)


@st.composite
def sample_line(draw: st.DrawFn, name: str) -> str:
    labels = draw(LABELS)
    pairs = ",".join(f'{key}="{escape(value)}"' for key, value in labels.items())
    empty_braces = draw(st.booleans())
    block = f"{{{pairs}}}" if labels or empty_braces else ""
    stamp = draw(STAMP)
    return f"{name}{block} {draw(numbers)}" + ("" if stamp is None else f" {stamp}")


@st.composite
def exposition(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        name = draw(ANY_NAME)
        if draw(st.booleans()):  # typed (else its samples follow the previous family's)
            lines += [f"# HELP {name} some help", f"# TYPE {name} untyped"]
        mixed = draw(st.booleans())
        for _ in range(draw(st.integers(min_value=1, max_value=8))):
            lines.append(draw(sample_line(draw(ANY_NAME) if mixed else name)))
        if draw(st.booleans()):
            lines.append("")
    return "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(exposition(), min_size=1, max_size=3))
def test_generated_expositions_read_as_prometheus_client_reads_them(texts: list[str]) -> None:
    scanner = ExpositionScanner(WANTED)
    for text in texts:  # one scanner over successive scrapes: its memory must not leak
        try:
            expected = oracle(text, WANTED)
        except ValueError:
            continue  # not every draw is valid exposition (a typed family repeated...)
        assert plain(scanner.scan(text)) == nan_safe(expected)
        assert plain(scanner.scan(text)) == nan_safe(expected)


@settings(max_examples=50, deadline=None)
@given(text=exposition())
def test_runs_cut_in_small_slices_read_the_same(text: str) -> None:
    try:
        expected = oracle(text, WANTED)
    except ValueError:
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(promscan, "_CHUNK", 40)  # a few lines per slice
        patch.setattr(promscan, "_CHUNK_VALUES", 3)
        assert plain(ExpositionScanner(WANTED).scan(text)) == nan_safe(expected)


def test_a_big_run_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        f'takhin_storage_log_end_offset{{partition="{i % 12}",topic="t{i // 12}"}} {v}'
        for i, v in enumerate([*range(500), "NaN", *range(500, 1000), "+Inf"])
    ]
    text = "# TYPE takhin_storage_log_end_offset gauge\n" + "\n".join(lines) + "\n"
    expected = nan_safe(oracle(text, READ_SAMPLES))
    monkeypatch.setattr(promscan, "_CHUNK", 1000)
    monkeypatch.setattr(promscan, "_CHUNK_VALUES", 64)
    scanner = ExpositionScanner(READ_SAMPLES)
    assert plain(scanner.scan(text)) == expected
    assert plain(scanner.scan(text)) == expected  # the remembered run, in slices too
    assert len(expected["takhin_storage_log_end_offset"]) == 1002


# --- what is skipped ---


def test_only_the_families_read_are_kept() -> None:
    text = (
        "# HELP process_cpu_seconds_total CPU\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 12.5\n"
        'takhin_kafka_requests_total{api_key="0",version="9"} 7 1700000000000\n'
        'other_gauge{path="/a b}c"} 1e3\n'
        "\n"
        '  takhin_consumer_group_state{group_id="odd } id",state="Stable"} 4  \n'
        "go_goroutines 12\n"
    )
    assert plain(parse_exposition(text, READ_SAMPLES)) == {
        "takhin_consumer_group_state": {(("group_id", "odd } id"), ("state", "Stable")): 4.0},
        "go_goroutines": {(): 12.0},
    }


def test_a_typed_family_not_read_is_not_looked_into() -> None:
    # a run made only of a family's own lines is skipped unread: its values are not
    # parsed (this is what makes a 300,000-sample scrape cheap)
    text = (
        "# TYPE other_total counter\n"
        'other_total{a="1"} not-a-number\n'
        "other_total{{{ whatever\n"
        "# TYPE up gauge\n"
        "up 1\n"
    )
    assert plain(parse_exposition(text, READ_SAMPLES | {"up"})) == {"up": {(): 1.0}}
    # ...but a line of another name in that run is read (untyped samples follow it)
    with pytest.raises(ValueError, match=r"line 3 is not a sample: 'stray'"):
        parse_exposition("# TYPE other gauge\nother 1\nstray\n", READ_SAMPLES)


# --- what is refused ---


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("hello world\n", 1),
        ('{"status": "ok"}\n', 1),
        ('takhin_connections_active 3\nsome_other_metric{a="b"}\n', 2),
        ("takhin_connections_active three\n", 1),
        ('takhin_storage_log_end_offset{topic="orders" 1\n', 1),
        ('# TYPE takhin_connections_active gauge\ntakhin_connections_active{a="b} 1\n', 2),
        ('takhin_storage_log_end_offset{topic="a"} 1\ntakhin_storage_log_end_offset{9="b"} 2', 2),
        ("takhin_connections_active1\n", 1),
    ],
)
def test_garbage_is_refused_naming_the_line(text: str, line: int) -> None:
    with pytest.raises(ValueError, match=rf"^line {line} is not a sample: "):
        parse_exposition(text, READ_SAMPLES)


@pytest.mark.parametrize("name", ["garbage.html", "truncated.prom"])
def test_garbage_fixtures_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a sample"):
        parse_exposition(fixture(name).decode(), READ_SAMPLES)


def test_a_long_bad_line_is_shortened() -> None:
    with pytest.raises(ValueError, match=r"'x{60}\.\.\.'$"):
        parse_exposition("x" * 70 + " y\n", READ_SAMPLES)


def test_a_prefixed_text_is_scanned_in_place() -> None:
    text = 'takhin_connections_active 3\ntakhin_go_goroutines{a="b"} x\n'
    with pytest.raises(ValueError, match=r"^line 2 is not a sample"):
        parse_exposition(text, READ_SAMPLES)
    scanner = ExpositionScanner(READ_SAMPLES)
    with pytest.raises(ValueError, match=r"^line 2 is not a sample"):
        scanner.scan("\n" + text, prefixed=True)
    assert plain(scanner.scan("\ntakhin_connections_active 3", prefixed=True)) == {
        "takhin_connections_active": {(): 3}
    }
    with pytest.raises(ValueError, match="starts with a newline"):
        scanner.scan("takhin_connections_active 3", prefixed=True)


# --- values and labels ---


def test_values_non_finite_and_exponents() -> None:
    text = "".join(
        f'takhin_storage_log_end_offset{{partition="{i}",topic="t"}} {token}\n'
        for i, token in enumerate(["NaN", "+Inf", "-Inf", "1.5e+06", "-0", "42", "0.25"])
    )
    values = parse_exposition(text, READ_SAMPLES)["takhin_storage_log_end_offset"].values
    assert math.isnan(values[0])
    assert list(values[1:]) == [math.inf, -math.inf, 1.5e6, 0.0, 42.0, 0.25]


@pytest.mark.parametrize(
    ("block", "labels"),
    [
        ("", ()),
        ('b="2",a="1"', (("a", "1"), ("b", "2"))),
        ('a="1",', (("a", "1"),)),
        (' a = "1" , b="x"', (("a", "1"), ("b", "x"))),
        (
            r'a="q\"uote",b="back\\slash",c="new\nline"',
            (("a", 'q"uote'), ("b", "back\\slash"), ("c", "new\nline")),
        ),
        ('a="} {,="', (("a", "} {,="),)),
        ('a="1",a="2"', (("a", "2"),)),
    ],
)
def test_parse_labels(block: str, labels: Labels) -> None:
    assert parse_labels(block) == labels


@pytest.mark.parametrize("block", ["a=1", 'a="1" b="2"', '="1"', 'a="1",,b="2"', 'a="unclosed'])
def test_parse_labels_refuses(block: str) -> None:
    with pytest.raises(ValueError, match="bad labels"):
        parse_labels(block)


# --- successive scans ---

SERIES = 'takhin_storage_log_end_offset{{partition="{p}",topic="t"}} {v}\n'


def text_of(values: dict[int, float]) -> str:
    return "# TYPE takhin_storage_log_end_offset gauge\n" + "".join(
        SERIES.format(p=p, v=v) for p, v in values.items()
    )


def test_unchanged_series_keep_their_keys() -> None:
    scanner = ExpositionScanner(READ_SAMPLES)
    first = scanner.scan(text_of({0: 1, 1: 2}))["takhin_storage_log_end_offset"]
    second = scanner.scan(text_of({0: 5, 1: 7}))["takhin_storage_log_end_offset"]
    assert second.keyset is first.keyset
    assert list(second.values) == [5, 7]
    third = scanner.scan(text_of({0: 5, 1: 7, 2: 9}))["takhin_storage_log_end_offset"]
    assert third.keyset is not second.keyset
    assert third.to_dict() == {
        (("partition", "0"), ("topic", "t")): 5,
        (("partition", "1"), ("topic", "t")): 7,
        (("partition", "2"), ("topic", "t")): 9,
    }
    # another scanner has no memory of those
    other = ExpositionScanner(READ_SAMPLES).scan(text_of({0: 5, 1: 7}))
    assert other["takhin_storage_log_end_offset"].keyset is not first.keyset


def test_a_repeated_series_counts_once_the_last_value() -> None:
    text = text_of({0: 1}) + SERIES.format(p=0, v=3)
    assert parse_exposition(text, READ_SAMPLES)["takhin_storage_log_end_offset"].to_dict() == {
        (("partition", "0"), ("topic", "t")): 3
    }


def test_a_family_in_two_places_is_merged() -> None:
    text = text_of({0: 1}) + "# TYPE up gauge\nup 1\n" + text_of({1: 2})
    found = parse_exposition(text, READ_SAMPLES)["takhin_storage_log_end_offset"]
    assert found.to_dict() == {
        (("partition", "0"), ("topic", "t")): 1,
        (("partition", "1"), ("topic", "t")): 2,
    }


# --- the columns ---


def test_series_and_keys() -> None:
    series = Series.of({(("topic", "a"),): 1.0, (("le", "+Inf"), ("topic", "b")): 2.0})
    assert len(series) == 2
    assert series == Series.of(series.to_dict())
    assert series != Series.of({})
    assert series.keyset.column("topic") == ("a", "b")
    assert series.keyset.column("le") == (None, "+Inf")
    assert series.keyset.column("other") == (None, None)
    assert series.keyset.index() == {(("topic", "a"),): 0, (("le", "+Inf"), ("topic", "b")): 1}
    assert "2 series" in repr(series.keyset)
    assert "Series({" in repr(series)
    with pytest.raises(ValueError, match="1 label sets but 2 values"):
        Series(Keys([()]), [1.0, 2.0])
    calls: list[Keys] = []

    def build(keys: Keys) -> int:
        calls.append(keys)
        return len(keys)

    assert series.keyset.derive(build) == 2
    assert series.keyset.derive(build) == 2
    assert calls == [series.keyset]
