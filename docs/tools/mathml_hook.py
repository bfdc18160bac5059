"""MkDocs hook: formulas rendered at build time into MathML, which browsers draw natively.

``pymdownx.arithmatex`` (generic mode) leaves each formula as ``\\( ... \\)`` or ``\\[ ... \\]``
inside a ``span``/``div`` of class ``arithmatex``; this hook replaces each by the MathML that
``latex2mathml`` makes of it. No JavaScript, no CDN, no network at build or view time.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


def _render(match: re.Match[str]) -> str:
    tag, body = match.group(1), html.unescape(match.group(2)).strip()
    block = body.startswith("\\[")
    tex = body[2:-2].strip()
    mathml = convert(tex, display="block" if block else "inline")
    return f'<{tag} class="arithmatex">{mathml}</{tag}>'


def on_page_content(html_text: str, **kwargs) -> str:
    return _MATH.sub(_render, html_text)
