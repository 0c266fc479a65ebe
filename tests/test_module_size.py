"""Small modules, one concept per file: no Python module of the package over
:data:`MAX_LINES` lines (a module that grows past it is split by concept, as
``prometheus/scan``/``series`` or ``producer``/``outlet`` were), and no package with
more than :data:`MAX_MODULES` modules side by side (a crowded one is split into
subpackages that follow the flow, as ``sources/kafka/`` and ``core/access/`` were)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent / "src" / "takhin_ws"
#: The project's bound on a source file (the engineering standards).
MAX_LINES: Final = 400
#: About ten modules a level (issue 25): a package past it is split into subpackages.
MAX_MODULES: Final = 10


def oversized(root: Path, limit: int) -> dict[str, int]:
    """Every ``.py`` file under *root* with more than *limit* lines, by relative path."""
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found[path.relative_to(root).as_posix()] = lines
    return found


def test_no_module_is_over_the_bound() -> None:
    over = oversized(ROOT, MAX_LINES)
    assert over == {}, f"split these by concept (at most {MAX_LINES} lines): {over}"


def test_the_size_check_sees_a_long_file(tmp_path: Path) -> None:
    """The check above can fail: a file one line over is found, one at the bound not."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("x = 1\n" * 5)
    (tmp_path / "short.py").write_text("x = 1\n" * 4)
    (tmp_path / "notes.txt").write_text("x\n" * 50)
    assert oversized(tmp_path, 4) == {"pkg/long.py": 5}


def crowded(root: Path, limit: int) -> dict[str, int]:
    """Every package under *root* (itself included) holding more than *limit* modules
    (``__init__`` not counted), by relative path."""
    found: dict[str, int] = {}
    for package in sorted({root, *(p.parent for p in root.rglob("__init__.py"))}):
        count = sum(1 for p in package.glob("*.py") if p.name != "__init__.py")
        if count > limit:
            found[package.relative_to(root).as_posix()] = count
    return found


def test_no_package_has_too_many_modules_side_by_side() -> None:
    over = crowded(ROOT, MAX_MODULES)
    assert over == {}, f"split these into subpackages (at most {MAX_MODULES} modules): {over}"


def test_the_crowding_check_sees_a_crowded_package(tmp_path: Path) -> None:
    """The check above can fail: one module over is found, at the bound not, the
    subpackage's modules count for it alone."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.py").write_text("")
    (tmp_path / "__init__.py").write_text("")
    sub = tmp_path / "sub"
    sub.mkdir()
    for name in ("__init__", "a", "b"):
        (sub / f"{name}.py").write_text("")
    assert crowded(tmp_path, 3) == {}
    assert crowded(tmp_path, 2) == {".": 3}
    assert crowded(tmp_path, 1) == {".": 3, "sub": 2}
