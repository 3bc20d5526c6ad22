"""The dashboard's own CSS and JS, and plotly.js from the installed package.

They are served by a view rather than by the static files app so that the
dashboard works as is under gunicorn, offline, with no CDN and no
collectstatic. URLs carry a content hash, so browsers may cache them forever.
"""

import hashlib
from functools import cache
from pathlib import Path

import plotly

ASSET_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript"}


def asset_path(name: str) -> Path | None:
    """The file behind an asset name, or None for anything not ours to serve."""
    if name == "plotly.min.js":
        return PLOTLY_JS
    candidate = (ASSET_DIR / name).resolve()
    if candidate.parent != ASSET_DIR or candidate.suffix not in CONTENT_TYPES:
        return None
    return candidate if candidate.is_file() else None


@cache
def _digest(path: Path, mtime: float) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def version(name: str) -> str:
    path = asset_path(name)
    if path is None:
        raise ValueError(f"no dashboard asset named {name!r}")
    return _digest(path, path.stat().st_mtime)
