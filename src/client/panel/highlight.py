"""Python source as one HTML string per line, highlighted with Pygments (IPython's own).

Token classes are few and short (``fb-k`` keyword, ``fb-s`` string, ...); the panel's CSS
colours them with JupyterLab's editor theme variables, so the source view matches the
notebook's light or dark theme. Without Pygments the lines are only escaped.
"""

from __future__ import annotations

import html
from typing import Dict, List, Optional, Tuple

try:
    from pygments import lex
    from pygments.lexers import PythonLexer
    from pygments.token import Token
except ImportError:  # pragma: no cover - IPython depends on Pygments
    lex = None

#: Token type -> CSS class; the first match in this order wins (token types nest).
_CLASSES: List[Tuple[object, str]] = [] if lex is None else [
    (Token.Comment, "fb-c"),
    (Token.Literal.String, "fb-s"),
    (Token.Literal.Number, "fb-n"),
    (Token.Keyword, "fb-k"),
    (Token.Name.Builtin, "fb-b"),
    (Token.Name.Function, "fb-f"),
    (Token.Name.Class, "fb-f"),
    (Token.Name.Decorator, "fb-d"),
    (Token.Operator.Word, "fb-k"),
    (Token.Operator, "fb-o"),
]


_cache: Dict[object, Optional[str]] = {}


def _css_class(token: object) -> Optional[str]:
    css = _cache.get(token, "")
    if css == "":
        css = next((c for kind, c in _CLASSES if token in kind), None)  # type: ignore[operator]
        _cache[token] = css
    return css


def highlight_lines(text: str) -> List[str]:
    """One HTML string per line of ``text`` (escaped, with token spans)."""
    if lex is None:
        return [html.escape(line) for line in text.splitlines()]
    lines: List[str] = []
    current: List[str] = []
    # ensurenl=False/stripnl=False keep the lexer from adding or dropping lines.
    for token, value in lex(text, PythonLexer(stripnl=False, ensurenl=False)):
        css = _css_class(token)
        parts = value.split("\n")
        for i, part in enumerate(parts):
            if i:
                lines.append("".join(current))
                current = []
            if part:
                escaped = html.escape(part)
                current.append(f"<span class='{css}'>{escaped}</span>" if css else escaped)
    if current or (text and not text.endswith("\n")):
        lines.append("".join(current))
    return lines
