"""``GET /``: the self-contained live dashboard shipped inside the package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["dashboard_page"]


@cache
def dashboard_page() -> bytes:
    """The page's bytes (HTML with its CSS and JavaScript inline; no CDN)."""
    return files("takhin_ws").joinpath("static/dashboard.html").read_bytes()
