"""Text and HTML renderings of groups, group results and stack reports (client/group.py, stacks.py)."""

from __future__ import annotations

import os
from typing import Any, List

from .display import esc, table

#: Member names a text rendering lists per stack class before it says "and N more".
SHOWN_NAMES = 6
#: A value's repr is cut to this many characters in a table.
VALUE_CHARS = 200
#: Multi-line cells (stacks, printed output) keep their line breaks.
_PRE = "<style>.fb-pre .fb-table td{white-space:pre-wrap}</style>"


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a value whose repr raises still gets a row
        text = f"<unprintable {type(value).__name__}: {exc!r}>"
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 1] + "…"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _names(names: List[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def _result_head(result: Any) -> str:
    answered = len(result) - len(result.errors)
    head = f"{result.op} on {len(result)} member{'' if len(result) == 1 else 's'}: {answered} answered"
    if result.errors:
        head += f", {len(result.errors)} failed"
    if result.skipped:
        head += f" ({len(result.skipped)} not paused)"
    return head


def result_text(result: Any) -> str:
    """A group result as text: one line per member."""
    lines = [_result_head(result)]
    width = max((len(n) for n in result), default=0)
    for name in result:
        if name in result.errors:
            lines.append(f"  {name.ljust(width)}  ! {_error(result.errors[name])}")
        else:
            lines.append(f"  {name.ljust(width)}  {_short(result.values()[name])}")
    return "\n".join(lines)


def result_html(result: Any) -> str:
    """A group result as a table: member, value or error, what it printed."""
    values = result.values()
    rows, classes = [], []
    for name in result:
        failed = name in result.errors
        rows.append((name, _error(result.errors[name]) if failed else _short(values[name]),
                     result.output.get(name, "")))
        classes.append("fb-deleted" if failed else "")
    return f'<div class="fb-pre">{_PRE}' + table(("member", "value", "printed"), rows, classes,
                                                 caption=f"<b>{esc(_result_head(result))}</b>") + "</div>"


def _stack_lines(cls: Any) -> str:
    return "\n".join(f"{f.function} ({os.path.basename(f.file)}:{f.line})" for f in cls.frames)


def stacks_text(report: Any) -> str:
    """A stack report as text: the summary, then each class with its members and frames."""
    lines = [report.summary()]
    for cls in report:
        lines.append("")
        lines.append(f"[{len(cls.members)}] {_names(cls.members)}")
        lines.extend(f"    {f.function} ({f.file}:{f.line})" for f in cls.frames)
    if report.errors:
        lines.append("")
        lines.extend(f"! {name}: {_error(exc)}" for name, exc in report.errors.items())
    if report.running:
        lines.append(f"\n({len(report.running)} not paused: {_names(report.running)})")
    return "\n".join(lines)


def stacks_html(report: Any) -> str:
    """A stack report as a table: how many, which members, the stack (innermost first)."""
    rows = [(len(cls.members), "\n".join(cls.members), _stack_lines(cls)) for cls in report]
    rows += [("!", name, _error(exc)) for name, exc in report.errors.items()]
    caption = f"<b>{esc(report.summary())}</b>"
    if report.running:
        caption += f" ({len(report.running)} not paused)"
    return f'<div class="fb-pre">{_PRE}' + table(("processes", "members", "stack (innermost first)"), rows,
                                                 caption=caption) + "</div>"


def _member_line(state: Any) -> str:
    if state.pause is not None:
        p = state.pause
        return f"paused at {os.path.basename(p.file)}:{p.line} in {p.function}"
    return state.state


def _group_head(group: Any, states: List[Any]) -> str:
    paused = sum(1 for s in states if s.state == "paused")
    head = f"group of {len(states)} member{'' if len(states) == 1 else 's'}, {paused} paused"
    if group.attach_errors:
        head += f" ({len(group.attach_errors)} could not be attached)"
    return head


def group_text(group: Any) -> str:
    """A group as text: one line per member with its state."""
    states = group.states()
    lines = [f"<{_group_head(group, states)}>"]
    lines += [f"  {s.name}  {_member_line(s)}" for s in states]
    lines += [f"  {name}  ! {_error(exc)}" for name, exc in group.attach_errors.items()]
    return "\n".join(lines)


def group_html(group: Any) -> str:
    """A group as a table of members and states."""
    states = group.states()
    rows = [(s.name, _member_line(s)) for s in states]
    rows += [(name, "not attached: " + _error(exc)) for name, exc in group.attach_errors.items()]
    classes = ["fb-sel" if s.state == "paused" else "" for s in states] + ["fb-deleted"] * len(group.attach_errors)
    return table(("member", "state"), rows, classes, caption=f"<b>{esc(_group_head(group, states))}</b>")
