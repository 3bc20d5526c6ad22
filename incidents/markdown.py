"""Post-mortem Markdown: escaping what goes in, and rendering it safely to HTML.

Rendering uses markdown-it-py with raw HTML off, so `<script>` and every tag
arrive as text; its link check refuses javascript:, vbscript:, file: and
data: URLs; images are turned off, so a post-mortem loads nothing from
elsewhere. No Django here.
"""

import re

from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_renderer.enable("table").disable("image")
# Characters that start Markdown syntax anywhere in a line, and HTML.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def render(markdown: str, *, heading_offset: int = 0) -> str:
    """HTML for a post-mortem; safe to mark safe, as no input HTML survives.

    heading_offset moves headings down (1: # becomes <h2>), for a page with its own <h1>.
    """
    env: dict = {}
    tokens = _renderer.parse(markdown, env)
    if heading_offset:
        for token in tokens:
            if token.type in ("heading_open", "heading_close"):
                token.tag = f"h{min(6, int(token.tag[1]) + heading_offset)}"
    return _renderer.renderer.render(tokens, _renderer.options, env)


def escape(text: object) -> str:
    """Text from telemetry (service names, versions, reasons) as literal Markdown."""
    flat = " ".join(str(text).split())
    return _SPECIAL.sub(r"\\\1", flat)
