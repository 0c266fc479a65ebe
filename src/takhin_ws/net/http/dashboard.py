"""``GET /``: the self-contained live dashboard shipped inside the package."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from typing import Final

__all__ = ["dashboard_page"]

#: The page's placeholder for ``--token-url`` (where it fetches a fresh token).
_TOKEN_URL_META: Final = b'<meta name="takhin-token-url" content="">'


@cache
def dashboard_page(token_url: str | None = None) -> bytes:
    """The page's bytes (HTML with its CSS and JavaScript inline; no CDN), telling it
    where to fetch a fresh token (``--token-url``), if anywhere."""
    page = files("takhin_ws").joinpath("static/dashboard.html").read_bytes()
    if not token_url:
        return page
    meta = f'<meta name="takhin-token-url" content="{escape(token_url, quote=True)}">'
    return page.replace(_TOKEN_URL_META, meta.encode(), 1)
