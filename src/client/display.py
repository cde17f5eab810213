"""HTML renderings for Jupyter (text renderings live in each class's __str__)."""

from __future__ import annotations

import html
import os
from typing import Any, Iterable, List, Optional, Sequence

_STYLE = (
    "<style>.fb-table{border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);"
    "font-size:12px}.fb-table th,.fb-table td{border:1px solid #ccc;padding:2px 6px;text-align:left;"
    "vertical-align:top}.fb-table th{background:#f3f3f3}.fb-sel{background:#fff6d5}"
    ".fb-changed{color:#a15c00}.fb-added{color:#17733a}.fb-deleted{color:#b00020}</style>"
)


def esc(value: Any) -> str:
    """HTML-escape anything."""
    return html.escape("" if value is None else str(value))


def human_size(n: Optional[int]) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Optional[List[str]] = None,
          caption: str = "") -> str:
    """A small escaped HTML table."""
    rows = list(rows)
    parts = [_STYLE, '<table class="fb-table">']
    if caption:
        parts.append(f"<caption style='text-align:left'>{caption}</caption>")
    parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>")
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def pause_html(pause: Any) -> str:
    rows = [("thread", f"{pause.name} ({pause.thread})"), ("reason", pause.reason),
            ("where", f"{os.path.basename(pause.file)}:{pause.line} in {pause.function}")]
    if "exception" in pause.extra:
        rows.append(("exception", pause.extra["exception"]))
    for expr, value in (pause.extra.get("watches") or {}).items():
        rows.append((f"watch {expr}", value))
    return table(("", ""), rows, caption="<b>paused</b>")


def stack_html(stack: Sequence[Any]) -> str:
    return table(("#", "function", "file", "line"),
                 ((f.index, f.function, f.file, f.line) for f in stack),
                 ["fb-sel" if f.selected else "" for f in stack])


def variables_html(variables: Any) -> str:
    return table(("name", "type", "size", "value"),
                 ((v.name, v.type, human_size(v.size), v.repr) for v in variables.values()))


def sessions_html(found: Sequence[Any]) -> str:
    if not found:
        return "<i>no attachable processes</i>"
    rows = []
    for s in found:
        where = "running"
        if s.paused:
            p = s.paused[0]
            where = f"paused at {os.path.basename(p.get('file', '?'))}:{p.get('line')} in {p.get('function')}"
        rows.append((s.pid, " ".join(s.argv), s.python, where))
    return table(("pid", "command", "python", "state"), rows)


def session_html(session: Any) -> str:
    state = "paused" if session.paused else "running"
    rows = [("pid", session.pid), ("state", state), ("command", " ".join(session.info.get("argv") or [])),
            ("python", session.info.get("python", "")), ("endpoint", session.info.get("endpoint", ""))]
    for p in session.pauses():
        rows.append((f"thread {p.name}", f"{p.reason} at {os.path.basename(p.file)}:{p.line} in {p.function}"))
    return table(("", ""), rows, caption="<b>framebridge session</b>")


def conflict_html(exc: Any) -> str:
    return table(("name", "problem"), ((n, "changed in the target since the mount") for n in exc.names),
                 ["fb-deleted"] * len(exc.names), caption=f"<b>write-back refused</b>: {esc(exc)}")
