"""The Lua scripts the cluster runs inside Redis, shipped as package data (``lua/``).

Each script is one file; ``ensure_epoch.lua`` is a prelude (it sets ``epoch``,
creating the state when Redis lost it) that the epoch and publish scripts begin with,
so both see the same epoch rule. Loaded once, at import, with :mod:`importlib.resources`
(works from a wheel, a zip or a checkout alike).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

__all__ = ["CURRENT_EPOCH", "LEASE_HOLD", "LEASE_RELEASE", "PUBLISH", "read_script"]


def read_script(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


_ENSURE_EPOCH: Final = read_script("ensure_epoch")
#: Returns the epoch (creating it if missing).
CURRENT_EPOCH: Final = _ENSURE_EPOCH + read_script("current_epoch")
#: Appends one entry under the next offset; returns ``{offset, epoch}``.
PUBLISH: Final = _ENSURE_EPOCH + read_script("publish")
#: Takes or renews the metrics lease; returns 1 if held.
LEASE_HOLD: Final = read_script("lease_hold")
#: Gives the metrics lease up if held.
LEASE_RELEASE: Final = read_script("lease_release")
