"""Prometheus series as the scanner hands them out: label sets and values as columns (pure).

- :data:`Labels`: one series' labels, ``(name, value)`` pairs sorted by name
  (:func:`parse_labels` reads them from a label block);
- :class:`Keys`: the label sets of one sample name, in exposition order; the scanner
  hands successive scans the same object while the series stay the same, so what
  depends on labels only is computed once (:meth:`Keys.derive`);
- :class:`Series`: a :class:`Keys` and its values, position by position;
  :data:`Exposition` maps each sample name of a scrape to its series.

The scanner itself is :mod:`takhin_ws.sources.prometheus.scan`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeAlias, TypeVar, final

__all__ = ["EMPTY", "Exposition", "Keys", "Labels", "Series", "parse_labels"]

#: One series' labels: ``(name, value)`` pairs sorted by name.
Labels: TypeAlias = tuple[tuple[str, str], ...]
T = TypeVar("T")

_PAIR: Final = re.compile(
    r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(?:,[ \t]*|$)'
)
#: A pair without escapes or spaces (what exporters write); the general rule is _PAIR.
_SIMPLE_PAIR: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_ESCAPE: Final = re.compile(r"\\(.)")
_UNESCAPED: Final = {"n": "\n", "\\": "\\", '"': '"'}


def parse_labels(block: str) -> Labels:
    """The labels of a label block's inside (``a="1",b="x\\"y"``), sorted by name.

    Values are unescaped (``\\\\``, ``\\"``, ``\\n``). Raises ``ValueError`` when *block*
    is not a list of ``name="value"`` pairs.
    """
    simple = _SIMPLE_PAIR.findall(block)
    exact = ",".join([f'{name}="{value}"' for name, value in simple]) == block
    if exact and len(simple) == len(dict(simple)):  # the common case: no escape, no space
        return tuple(sorted(simple))
    pairs: dict[str, str] = {}
    pos, end = 0, len(block)
    while pos < end:
        match = _PAIR.match(block, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"bad labels {{{block}}}")
        name, value = match.groups()
        if "\\" in value:
            value = _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), value)
        pairs[name] = value
        pos = match.end()
    return tuple(sorted(pairs.items()))


@final
class Keys:
    """The label sets of one sample name's series, in exposition order.

    A scanner hands successive scans the same ``Keys`` object while the series stay the
    same, so ``previous.keyset is current.keyset`` means "aligned by position", and anything
    computed from labels alone can be kept with it (:meth:`derive`).
    """

    __slots__ = ("_memo", "labels")

    def __init__(self, labels: Sequence[Labels]) -> None:
        self.labels: tuple[Labels, ...] = tuple(labels)
        self._memo: dict[Callable[[Keys], object], object] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"<Keys of {len(self.labels)} series>"

    def derive(self, build: Callable[[Keys], T]) -> T:
        """``build(self)``, computed once per ``Keys`` (*build* must depend on labels only)."""
        try:
            return self._memo[build]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[build] = build(self)
            return value

    def column(self, name: str) -> tuple[str | None, ...]:
        """The value of label *name* of each series (``None`` where absent)."""
        return self.derive(_COLUMNS[name]) if name in _COLUMNS else _column(self, name)

    def index(self) -> Mapping[Labels, int]:
        """Position of each label set."""
        return self.derive(_index)


def _column(keys: Keys, name: str) -> tuple[str | None, ...]:
    return tuple(dict(labels).get(name) for labels in keys.labels)


def _index(keys: Keys) -> Mapping[Labels, int]:
    return {labels: position for position, labels in enumerate(keys.labels)}


def _column_of(name: str) -> Callable[[Keys], tuple[str | None, ...]]:
    def build(keys: Keys) -> tuple[str | None, ...]:
        return _column(keys, name)

    build.__name__ = f"column_{name}"
    return build


#: Memoised columns of the labels the sources read.
_COLUMNS: Final = {
    name: _column_of(name) for name in ("topic", "partition", "group_id", "state", "le")
}


@final
class Series:
    """The series of one sample name, as two columns: ``values[i]`` belongs to
    ``keyset.labels[i]`` (:meth:`to_dict` gives the plain mapping)."""

    __slots__ = ("keyset", "values")

    def __init__(self, keyset: Keys, values: Sequence[float]) -> None:
        if len(keyset) != len(values):
            raise ValueError(f"{len(keyset)} label sets but {len(values)} values")
        self.keyset = keyset
        self.values = values

    @classmethod
    def of(cls, samples: Mapping[Labels, float]) -> Series:
        """The series of a plain ``{labels: value}`` mapping."""
        return cls(Keys(list(samples)), list(samples.values()))

    def to_dict(self) -> dict[Labels, float]:
        return dict(zip(self.keyset.labels, self.values, strict=True))

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Series):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Series({self.to_dict()!r})"


#: Samples of one scrape: sample name -> its series.
Exposition: TypeAlias = Mapping[str, Series]

EMPTY: Final = Series(Keys(()), ())
