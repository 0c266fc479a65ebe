"""A scanner of Prometheus text exposition that reads only the families it is asked for (pure).

A broker of 3,000 topics serves ~330,000 samples (~25 MiB) per scrape, of which a source
reads about two thirds; a general parser costs tens of microseconds per sample, far too
much for a 2 s tick. :class:`ExpositionScanner` costs well under a microsecond per wanted
sample and next to nothing per unwanted one:

- The text is cut at its comment lines (``str.find``) into *runs* of sample lines, each
  under the family its ``# TYPE``/``# HELP`` line names. A run of a family no wanted name
  starts with is skipped after two ``str.count`` calls prove every one of its lines is
  that family's (else it is read line by line, so untyped samples are never missed).
- A run that may hold wanted samples is split into label blocks and values with a few
  whole-string operations (``replace``, ``split``, slicing); the values are parsed in one
  ``orjson`` call (``float()`` each when a token is not plain JSON, such as ``NaN`` or
  ``+Inf``).
- The label blocks of a run are compared with the previous scan's (one list
  comparison); only when the series changed are they parsed again. Unchanged series
  keep the same :class:`Keys` object, so computations over successive scans line up
  by position and memoise what depends on labels only (:meth:`Keys.derive`).
- Anything unusual (lines without labels, timestamps, blank lines, a ``"} "`` inside a
  label value, samples of another family) sends that run to a line-by-line parser that
  checks each line's form and says which line is wrong.

The result maps each wanted sample name to a :class:`~.series.Series`: its label
sets (sorted ``(name, value)`` pairs) and its values, as two columns (see
:mod:`takhin_ws.sources.prometheus.series`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from operator import itemgetter
from typing import Final

import attrs
import orjson

from .series import Keys, Labels, Series, parse_labels

__all__ = ["ExpositionScanner", "parse_exposition"]

_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: One sample line: name, optional label block (quote-aware, so a ``}`` inside a value is
#: fine), value, optional timestamp.
_LINE: Final = re.compile(
    r'[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]*\{((?:[^"}]|"(?:[^"\\\n]|\\.)*")*)\}[ \t]*|[ \t]+)'
    r"([^ \t]+)(?:[ \t]+-?[0-9]+)?[ \t]*"
)
#: Characters of a list of JSON numbers (anything else: parse each token with float()).
_JSON_NUMBERS: Final = re.compile(r"[0-9eE+\-.,]*")
#: Characters of sample lines split at once, and values parsed at once: each such call
#: holds the GIL for a millisecond or two, so the event loop's thread waits no longer.
_CHUNK: Final = 256 * 1024
_CHUNK_VALUES: Final = 16384
#: Longest excerpt of a bad line quoted in an error.
_SHOWN: Final = 60
#: The label cache is dropped when it holds this many times more entries than series.
_CACHE_SLACK: Final = 4


@attrs.frozen
class _Run:
    """What a fast-path run looked like at the last scan, to recognise it unchanged."""

    blocks: list[str]
    #: wanted sample name -> its keys and the positions of its lines (None: every line)
    names: dict[str, tuple[Keys, tuple[int, ...] | None]]


class ExpositionScanner:
    """Scans expositions for the sample names in *wanted* (see the module docstring).

    Keep one scanner per endpoint: it remembers the previous scan's series so an
    unchanged run costs no label parsing. Not thread-safe: one :meth:`scan` at a time.
    """

    def __init__(self, wanted: Collection[str]) -> None:
        self.wanted: frozenset[str] = frozenset(wanted)
        self._runs: dict[tuple[str | None, int], _Run] = {}
        self._labels: dict[str, Labels] = {}
        self._family_wants: dict[str | None, frozenset[str]] = {None: self.wanted}

    def scan(self, text: str, *, prefixed: bool = False) -> dict[str, Series]:
        """The wanted samples of *text*. Raises ``ValueError`` naming the first bad line.

        *prefixed*: *text* is a newline followed by the exposition (the scan works on
        that form; a caller that builds the text anyway saves a copy of it).
        """
        data = text if prefixed else "\n" + text
        if not data.startswith("\n"):
            raise ValueError("a prefixed text starts with a newline")
        stop = len(data) - 1 if data.endswith("\n") else len(data)
        found: dict[str, list[tuple[Keys, Sequence[float]]]] = {}
        runs: dict[tuple[str | None, int], _Run] = {}
        seen: dict[str | None, int] = {}
        family: str | None = None
        pos = 0  # the newline that starts the next line
        while pos < stop:
            comment = _next_comment(data, pos, stop)
            end = stop if comment == -1 else comment
            if end > pos:
                occurrence = seen[family] = seen.get(family, -1) + 1
                run = self._run(data, pos, end, family, (family, occurrence), found)
                if run is not None:
                    runs[(family, occurrence)] = run
            if comment == -1:
                break
            pos = data.find("\n", comment + 1, stop)
            if pos == -1:
                pos = stop
            tokens = data[comment + 2 : pos].split(None, 2)
            if len(tokens) >= 2 and tokens[0] in ("TYPE", "HELP"):
                family = tokens[1]
        self._runs = runs
        series = sum(len(keys) for parts in found.values() for keys, _ in parts)
        if len(self._labels) > _CACHE_SLACK * max(series, 1):
            self._labels = {}
        return {name: _merge(parts) for name, parts in found.items()}

    # --- one run of sample lines: data[start + 1 : end], start being a newline ---

    def _wants(self, family: str | None) -> frozenset[str]:
        wants = self._family_wants.get(family)
        if wants is None:
            assert family is not None
            wants = frozenset(name for name in self.wanted if name.startswith(family))
            self._family_wants[family] = wants
        return wants

    def _run(
        self,
        data: str,
        start: int,
        end: int,
        family: str | None,
        key: tuple[str | None, int],
        found: dict[str, list[tuple[Keys, Sequence[float]]]],
    ) -> _Run | None:
        if family is not None and not self._wants(family):
            if data.count("\n" + family, start, end) == data.count("\n", start, end):
                return None  # only that family's lines: not read
            self._slow(data, start, end, found)
            return None
        columns = _columns(data, start, end)
        if columns is not None:
            blocks, tokens = columns
            previous = self._runs.get(key)
            run = previous if previous is not None and previous.blocks == blocks else None
            if run is None:
                run = self._structure(blocks)
            values = _floats(tokens) if run is not None else None
            if run is not None and values is not None:
                for name, (keys, positions) in run.names.items():
                    if positions is None:
                        picked: Sequence[float] = values
                    elif len(positions) == 1:
                        picked = [values[positions[0]]]
                    else:
                        picked = itemgetter(*positions)(values)
                    found.setdefault(name, []).append((keys, picked))
                return run
        self._slow(data, start, end, found)
        return None

    def _structure(self, blocks: list[str]) -> _Run | None:
        """The keys of each wanted name among *blocks* (``name{labels``), or ``None``
        when a block is not of that form (the slow path then says what is wrong)."""
        parted = [block.partition("{") for block in blocks]
        names = {name for name, _, _ in parted}
        if not all(brace for _, brace, _ in parted) or not all(
            name in self.wanted or _METRIC_NAME.fullmatch(name) for name in names
        ):
            return None
        out: dict[str, tuple[Keys, tuple[int, ...] | None]] = {}
        try:
            if len(names) == 1:  # a gauge's or counter's run: every line is the name's
                (name,) = names
                if name in self.wanted:
                    labels = [self._labels_of(inside) for _, _, inside in parted]
                    out[name] = self._keys(labels, range(len(labels)), every=True)
                return _Run(blocks=blocks, names=out)
            by_name: dict[str, tuple[list[Labels], list[int]]] = {}
            for position, (name, _, inside) in enumerate(parted):
                if name in self.wanted:
                    labels, where = by_name.setdefault(name, ([], []))
                    labels.append(self._labels_of(inside))
                    where.append(position)
            for name, (labels, where) in by_name.items():
                out[name] = self._keys(labels, where, every=False)
        except ValueError:
            return None
        return _Run(blocks=blocks, names=out)

    def _labels_of(self, inside: str) -> Labels:
        labels = self._labels.get(inside)
        if labels is None:
            labels = self._labels[inside] = parse_labels(inside)
        return labels

    @staticmethod
    def _keys(
        labels: list[Labels], where: Sequence[int], *, every: bool
    ) -> tuple[Keys, tuple[int, ...] | None]:
        """Keys and positions of one name's lines; a repeated series counts once, the
        last one."""
        if len(set(labels)) != len(labels):
            last = dict(zip(labels, where, strict=True))
            return Keys(list(last)), tuple(last.values())
        return Keys(labels), None if every else tuple(where)

    def _slow(
        self,
        data: str,
        start: int,
        end: int,
        found: dict[str, list[tuple[Keys, Sequence[float]]]],
    ) -> None:
        """Line by line: every line checked, the wanted ones kept."""
        samples: dict[str, dict[Labels, float]] = {}
        pos = start
        while pos < end:
            nxt = data.find("\n", pos + 1, end)
            if nxt == -1:
                nxt = end
            line = data[pos + 1 : nxt]
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                match = _LINE.fullmatch(line)
                if match is None:
                    raise _bad_line(data, pos, line)
                name, block, token = match.groups()
                try:
                    value = float(token)
                    labels = parse_labels(block) if block else ()
                except ValueError:
                    raise _bad_line(data, pos, line) from None
                if name in self.wanted:
                    series = samples.setdefault(name, {})
                    series.pop(labels, None)
                    series[labels] = value
            pos = nxt
        for name, series in samples.items():
            found.setdefault(name, []).append((Keys(list(series)), list(series.values())))


def _next_comment(data: str, pos: int, stop: int) -> int:
    """The newline before the next ``#`` line after *pos*, or -1.

    ``str.find`` of one character is a ``memchr`` (a few ms for 25 MiB, ten times less
    than a two-character search); a ``#`` inside a label value is passed over.
    """
    while True:
        hash_ = data.find("#", pos, stop)
        if hash_ == -1:
            return -1
        if data[hash_ - 1] == "\n":
            return hash_ - 1
        pos = hash_ + 1


def _bad_line(data: str, pos: int, line: str) -> ValueError:
    number = data.count("\n", 0, pos + 1)
    shown = line.strip()
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + "..."
    return ValueError(f"line {number} is not a sample: {shown!r}")


def _columns(data: str, start: int, end: int) -> tuple[list[str], list[str]] | None:
    """The label blocks (``name{labels``) and value tokens of the lines in
    ``data[start + 1 : end]``, or ``None`` unless every line holds one ``"} "``.

    Whole-string operations, a slice of about :data:`_CHUNK` characters at a time:
    each holds the GIL, so a short one lets the event loop's thread run between them.
    """
    blocks: list[str] = []
    tokens: list[str] = []
    while start < end:
        stop = data.find("\n", start + _CHUNK, end) if start + _CHUNK < end else -1
        if stop == -1:
            stop = end
        parts = data[start + 1 : stop].replace("} ", "\n").split("\n")
        if len(parts) != 2 * data.count("\n", start, stop):
            return None
        blocks += parts[0::2]
        tokens += parts[1::2]
        start = stop
    return blocks, tokens


def _floats(tokens: list[str]) -> list[float] | None:
    """*tokens* as numbers (orjson, :data:`_CHUNK_VALUES` at a time, when they are plain
    JSON numbers; ``float()`` each otherwise), or ``None`` if one is not a number."""
    values: list[float] = []
    for first in range(0, len(tokens), _CHUNK_VALUES):
        part = tokens[first : first + _CHUNK_VALUES]
        joined = ",".join(part)
        parsed: list[float] | None = None
        if _JSON_NUMBERS.fullmatch(joined) is not None:
            try:
                parsed = orjson.loads("[" + joined + "]")
            except orjson.JSONDecodeError:
                parsed = None
            if parsed is not None and len(parsed) != len(part):
                parsed = None
        if parsed is None:
            try:
                parsed = [float(token) for token in part]
            except ValueError:
                return None
        values += parsed
    return values


def _merge(parts: list[tuple[Keys, Sequence[float]]]) -> Series:
    if len(parts) == 1:
        keys, values = parts[0]
        return Series(keys, values)
    merged: dict[Labels, float] = {}
    for keys, values in parts:
        for labels, value in zip(keys.labels, values, strict=True):
            merged.pop(labels, None)
            merged[labels] = value
    return Series.of(merged)


def parse_exposition(text: str, wanted: Collection[str]) -> dict[str, Series]:
    """The samples of *text* named in *wanted* (a one-off :class:`ExpositionScanner`).

    Raises ``ValueError`` saying which line is wrong when *text* is not exposition text.
    """
    return ExpositionScanner(wanted).scan(text)
