"""Text helpers of the docs tools: docstrings as Markdown, annotations, defaults,
signatures, and the anchors GitHub gives a page's headings (``tools/gen_reference.py``,
``tests/test_docs.py``)."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import typing
from collections.abc import Iterator
from typing import Any

import attrs


def markdown(doc: str | None) -> str:
    """A docstring (reST-flavoured) as Markdown: ``x`` and :role:`~a.b.X` become `x`."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc)
    text = re.sub(r":[a-z]+:`~?([^`<]+?)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def summary(doc: str | None) -> str:
    return cell(markdown(doc).split("\n\n")[0])


def cell(text: str) -> str:
    """*text* fit for one table cell (one line, pipes escaped)."""
    return " ".join(text.split()).replace("|", r"\|")


def own_doc(obj: Any) -> str | None:
    """*obj*'s own docstring (a class without one does not inherit its base's)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    return doc if isinstance(doc, str) else None


def annotation(cls: type, name: str) -> str:
    """The annotation of *name* as written in the source of *cls* (or a base)."""
    for klass in cls.__mro__:
        found = inspect.get_annotations(klass).get(name)
        if found is not None:
            return found if isinstance(found, str) else getattr(found, "__name__", str(found))
    return ""


def type_text(cls: type, name: str) -> str:
    text = annotation(cls, name)
    try:
        hint = typing.get_type_hints(cls).get(name)
    except NameError:  # an annotation naming something imported only for type checking
        hint = None
    if hint is not None and typing.get_origin(hint) is typing.Literal:
        text = "Literal[" + ", ".join(map(repr, typing.get_args(hint))) + "]"
    return cell(f"`{text}`")


def value_text(value: Any) -> str:
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    if attrs.has(type(value)):
        try:
            if value == type(value)():
                return f"{type(value).__name__}()"
        except TypeError:  # required attributes: no empty instance to compare with
            pass
    if isinstance(value, frozenset | set):  # in a stable order (not the hash seed's)
        items = ", ".join(sorted(map(repr, value)))
        return f"{type(value).__name__}({{{items}}})" if value else f"{type(value).__name__}()"
    # the interpreter's path differs per checkout: the page names it as the code does
    text = repr(value).replace(repr(sys.executable), "sys.executable")
    if " at 0x" in text:
        raise ValueError(f"a default without a stable text: {text}")
    return text


def default_text(field: attrs.Attribute[Any]) -> str:
    value = field.default
    if value is attrs.NOTHING:
        return "required"
    factory = getattr(value, "factory", None)
    if isinstance(value, type(attrs.Factory(list))) and callable(factory):
        value = "computed" if getattr(value, "takes_self", False) else factory()
    return cell(f"`{value_text(value)}`")


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines right above each attribute in the source of *cls*
    and of its attrs bases."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = re.match(r"(\w+)\s*:", stripped)
            if match and pending:
                comments[match.group(1)] = markdown(" ".join(pending))
            pending = []
    return comments


def slug(heading: str) -> str:
    """GitHub's anchor of a heading (before de-duplication)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> Iterator[tuple[int, str, str]]:
    """(level, title, anchor) of every heading of a Markdown page, as GitHub names them."""
    seen: dict[str, int] = {}
    body = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # no headings in code
    for match in re.finditer(r"^(#+) (.+)$", body, flags=re.M):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        yield len(match.group(1)), match.group(2), f"{base}-{count}" if count else base


def signature(obj: Any) -> str:
    """``(a, *, b=None)``: the parameters and defaults of *obj*, without annotations."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = []
    for param in sig.parameters.values():
        if param.default is not inspect.Parameter.empty:
            param = param.replace(default=_Shown(value_text(param.default)))
        params.append(param.replace(annotation=inspect.Parameter.empty))
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


class _Shown:
    """A default that prints as the given text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def init_attributes(cls: type) -> list[str]:
    """Public ``self.x = ...`` assignments in ``cls.__init__`` (what ``server.hub`` is)."""
    init = cls.__dict__.get("__init__")
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init))) if init else None
    except (OSError, TypeError):
        tree = None
    names: list[str] = []
    for node in ast.walk(tree) if tree else ():
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                public = target.value.id == "self" and not target.attr.startswith("_")
                if public and target.attr not in names:
                    names.append(target.attr)
    return names
