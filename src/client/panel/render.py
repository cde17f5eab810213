"""What the DebugPanel shows, as text and HTML: pure functions, no widgets, no target.

client/panel/core.py and the views put their results into widgets.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..display import esc, human_size
from ..errors import RemoteError, RequestTimeout, SessionLost

#: Characters of a console result shown before it is cut.
RESULT_CHARS = 4000
#: Variables shown in the table before "... N more".
VARIABLE_ROWS = 200


def short(text: str, limit: int = RESULT_CHARS) -> str:
    """``text``, cut after ``limit`` characters (saying how many more there were)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def is_expression(source: str) -> bool:
    """Whether console input is an expression (evaluated, result shown) or statements (executed)."""
    try:
        compile(source, "<console>", "eval")
        return True
    except SyntaxError:
        return False


def parse_location(text: str) -> Tuple[str, int, Optional[str]]:
    """``"file.py:42"`` or ``"file.py:42 if x > 3"`` -> (file, line, condition)."""
    spec, _, condition = text.strip().partition(" if ")
    file, sep, line = spec.strip().rpartition(":")
    if not sep or not file or not line.strip().isdigit():
        raise ValueError(f"expected file:line (optionally 'if condition'), got {text.strip()!r}")
    return file.strip(), int(line), condition.strip() or None


def breakpoint_label(bp: Any) -> str:
    """``#1 etl.py:42 if x > 3 (2 hits)``: short enough for the list (the message has the path)."""
    file, line = getattr(bp, "file", None), getattr(bp, "line", None)
    if file is None or line is None:
        return str(bp)
    text = f"#{getattr(bp, 'id', '?')} {os.path.basename(file)}:{line}"
    if getattr(bp, "condition", None):
        text += f" if {bp.condition}"
    hits = getattr(bp, "hits", 0)
    return text + (f" ({hits} hit{'s' if hits != 1 else ''})" if hits else "")


#: Characters of an error line in the message area.
ERROR_CHARS = 240


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` on one line (its first non-empty line), cut after ``limit`` characters."""
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """One line for the panel's message area: what failed, in the user's terms."""
    if isinstance(exc, RemoteError):
        return one_line(f"{exc.remote_type}: {exc.remote_message}")
    if isinstance(exc, SessionLost):
        return one_line(f"the target is gone ({exc})")
    if isinstance(exc, RequestTimeout):
        return one_line(f"no answer in time ({exc})")
    return one_line(f"{type(exc).__name__}: {exc}")


def message_html(text: str, *, error: bool = False) -> str:
    """The message area's content."""
    cls = "fb-err" if error else "fb-info"
    return f"<span class='{cls}'>{esc(text)}</span>" if text else ""


def pause_state_html(pid: int, pauses: Sequence[Any]) -> str:
    """The state line: where the first paused thread is (and its watches), or running."""
    if not pauses:
        return f"<span class='fb-running'>running</span> &middot; pid {pid}"
    p = pauses[0]
    more = f" (+{len(pauses) - 1} more paused threads)" if len(pauses) > 1 else ""
    text = (f"<span class='fb-paused'>paused</span> ({esc(p.reason)}) at "
            f"<b>{esc(os.path.basename(p.file))}:{p.line}</b> in {esc(p.function)}() "
            f"&middot; thread {esc(p.name)} &middot; pid {pid}{more}")
    if "exception" in p.extra:
        text += f"<br>exception: {esc(p.extra['exception'])}"
    for expr, value in (p.extra.get("watches") or {}).items():
        text += f"<br>watch {esc(expr)} = {esc(value)}"
    return text


def lost_html(error: Any) -> str:
    """The state line once the session is lost."""
    return f"<span class='fb-gone'>lost</span> {esc(error)}"


def variable_rows(variables: Dict[str, Any]) -> Tuple[List[List[str]], List[str]]:
    """Rows (name, type, size, value) for the variables table (the first VARIABLE_ROWS of
    them), and a CSS class per row: ``fb-live`` for values that cannot be copied."""
    rows: List[List[str]] = []
    classes: List[str] = []
    for v in list(variables.values())[:VARIABLE_ROWS]:
        size = human_size(v.size)
        if v.shape is not None:
            size = f"{'x'.join(str(n) for n in v.shape) or '()'}  {size}"
        elif v.length is not None:
            size = f"len {v.length}  {size}"
        rows.append([v.name, v.type, size, v.repr])
        classes.append("")
    more = len(variables) - VARIABLE_ROWS
    if more > 0:
        rows.append([f"... {more} more", "", "", ""])
        classes.append("fb-more")
    return rows, classes


def console_input_html(frame_label: str, source: str) -> str:
    """A transcript entry's first line: the frame it ran in and what ran."""
    return f"<pre class='fb-in'>[{esc(frame_label.split('  ')[0])}] &gt;&gt;&gt; {esc(source)}</pre>"


def console_output_html(out: str) -> str:
    """What a console input printed and returned (or that it had nothing to show)."""
    return f"<pre class='fb-out'>{esc(out)}</pre>" if out else "<pre class='fb-ok'>(done, no output)</pre>"


def console_error_html(exc: BaseException) -> str:
    """A console input's error: the target's traceback, or the client error."""
    if isinstance(exc, RemoteError):
        detail = exc.remote_traceback.rstrip() or f"{exc.remote_type}: {exc.remote_message}"
        return f"<pre class='fb-err'>{esc(short(detail))}</pre>"
    return f"<pre class='fb-err'>{esc(type(exc).__name__)}: {esc(exc)}</pre>"


def next_input_html(text: str) -> str:
    """The echo under the console input: what "run" will run."""
    return f"<span class='fb-in'>next: <code>{esc(text)}</code></span>" if text else ""
