"""Small modules, one concept per file: no Python module of the package over
:data:`MAX_LINES` lines (a module that grows past it is split by concept, as
``promscan``/``promseries`` or ``producer``/``outlet`` were)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent / "src" / "takhin_ws"
#: The project's bound on a source file (the engineering standards).
MAX_LINES: Final = 400


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
