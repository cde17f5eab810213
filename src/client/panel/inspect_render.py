"""The inspector's HTML for a value preview (bridge/previews.py): pure functions.

A DataFrame as the scrollable table pandas gives Jupyter, an array as its shape, dtype,
statistics and a small plot (plots.py), dicts, lists and objects as a tree of
``<details>`` that the browser expands without a round trip, an image as an image.
Everything that came from the target is escaped (pandas' own table escapes its cells).
"""

from __future__ import annotations

import base64
from typing import Any, Dict, List

from ..display import esc, human_size
from .plots import plot_html

#: Rows of a fully loaded DataFrame that the table shows (the value itself is all there).
FULL_TABLE_ROWS = 1000


def _num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else esc(n)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return esc(x)


def header_html(expr: str, meta: Dict[str, Any], *, full: bool) -> str:
    """``name  type · shape · size`` and the live / loaded badges."""
    bits = [esc(meta.get("type", ""))]
    shape = meta.get("shape")
    if shape is not None:
        bits.append(" × ".join(_num(n) for n in shape) or "()")
    if meta.get("dtype"):
        bits.append(esc(meta["dtype"]))
    if meta.get("len") is not None and shape is None:
        bits.append(f"len {_num(meta['len'])}")
    if meta.get("nbytes") is not None:
        bits.append(esc(human_size(meta["nbytes"])))
    badges = ""
    if meta.get("live"):
        badges += ("<span class='fb-badge fb-live' title='This value cannot be copied to the notebook: it "
                   "stays in the target, and acting on it acts there'>live</span>")
    if full:
        badges += "<span class='fb-badge fb-full'>loaded in full</span>"
    return (f"<div class='fb-insp-head'><code class='fb-insp-name'>{esc(expr)}</code> "
            f"<span class='fb-insp-type'>{' · '.join(bits)}</span>{badges}</div>")


def inspector_html(expr: str, meta: Dict[str, Any], sample: Any, *, plots: str = "auto",
                   full: bool = False) -> str:
    """The whole inspector for one value."""
    kind = meta.get("kind", "other")
    body = _BODIES.get(kind, _repr_body)(meta, sample, plots, full)
    notes: List[str] = []
    if meta.get("live"):
        notes.append("live reference: the object stays in the target; <b>load all</b> gives a proxy "
                     "whose methods run there")
    if meta.get("error"):
        notes.append(f"preview failed: {esc(meta['error'])}")
    sample_state = meta.get("sample", "sent")
    if sample_state not in ("sent", "none"):
        notes.append(f"preview {esc(sample_state)}")
    foot = "".join(f"<div class='fb-insp-note'>{n}</div>" for n in notes)
    return f"<div class='fb-insp'>{header_html(expr, meta, full=full)}{body}{foot}</div>"


def message_html(expr: str, text: str, *, error: bool = False) -> str:
    """The inspector showing a line of text instead of a value."""
    cls = "fb-insp-note fb-err" if error else "fb-insp-note"
    name = f"<code class='fb-insp-name'>{esc(expr)}</code> " if expr else ""
    return f"<div class='fb-insp'><div class='{cls}'>{name}{esc(text)}</div></div>"


# --- one body per kind ---------------------------------------------------------------------


def _table_body(meta: Dict[str, Any], sample: Any, plots: str, full: bool) -> str:
    shape = meta.get("shape") or [0, 0]
    if not hasattr(sample, "to_html"):  # pandas is missing here (or the sample was left out)
        return f"<pre class='fb-insp-repr'>{esc(meta.get('repr', ''))}</pre>"
    rows = FULL_TABLE_ROWS if full else None
    table = sample.to_html(max_rows=rows, max_cols=None if full else 60, border=0,
                           classes="fb-df", notebook=True)
    shown = min(len(sample), rows) if rows else len(sample)
    total = shape[0]
    caption = f"{_num(shown)} of {_num(total)} rows" if shown < total else f"all {_num(total)} rows"
    if len(shape) > 1 and meta.get("cols_shown", shape[1]) < shape[1]:
        caption += f", {_num(meta['cols_shown'])} of {_num(shape[1])} columns"
    dtypes = meta.get("dtypes")
    dtype_html = ""
    if dtypes:
        cells = "".join(f"<tr><td>{esc(c)}</td><td>{esc(t)}</td></tr>" for c, t in dtypes)
        dtype_html = (f"<details class='fb-dtypes'><summary>dtypes ({_num(len(dtypes))})</summary>"
                      f"<table>{cells}</table></details>")
    return (f"<div class='fb-insp-caption'>{caption}</div><div class='fb-df-box'>{table}</div>{dtype_html}")


def _array_body(meta: Dict[str, Any], sample: Any, plots: str, full: bool) -> str:
    stats = meta.get("stats") or {}
    cells = []
    for key in ("min", "max", "mean", "std", "nan", "inf", "true"):
        if key in stats and (key not in ("nan", "inf") or stats[key]):
            cells.append(f"<span class='fb-stat'><b>{key}</b> {_fmt(stats[key])}</span>")
    if "sampled" in stats:
        cells.append(f"<span class='fb-stat fb-dim'>from a sample of {_num(stats['sampled'])} "
                     f"of {_num(stats['count'])} values</span>")
    plot = plot_html(meta, sample, plots) if isinstance(sample, dict) else ""
    if isinstance(sample, dict) and sample.get("bucket"):
        plot += (f"<div class='fb-insp-caption'>min and max of every {_num(sample['bucket'])} values "
                 f"({_num(sample['n'])} in all)</div>")
    if isinstance(sample, dict) and sample.get("step") and sample["step"] != [1, 1]:
        plot += f"<div class='fb-insp-caption'>every {sample['step'][0]}th row, {sample['step'][1]}th column</div>"
    return (f"<div class='fb-stats'>{''.join(cells)}</div><div class='fb-plot-box'>{plot}</div>"
            f"<details class='fb-values'><summary>values</summary>"
            f"<pre class='fb-insp-repr'>{esc(meta.get('repr', ''))}</pre></details>")


def _image_body(meta: Dict[str, Any], sample: Any, plots: str, full: bool) -> str:
    if not isinstance(sample, dict) or "data" not in sample:
        return _repr_body(meta, sample, plots, full)
    size = meta.get("size")
    caption = f"<div class='fb-insp-caption'>{size[0]} × {size[1]} {esc(meta.get('mode', ''))}</div>" if size else ""
    data = base64.b64encode(sample["data"]).decode("ascii")
    return f"{caption}<img class='fb-image' src='data:image/png;base64,{data}'/>"


def _text_body(meta: Dict[str, Any], sample: Any, plots: str, full: bool) -> str:
    text = sample if isinstance(sample, str) else meta.get("repr", "")
    cut = ""
    if meta.get("cut") and isinstance(meta.get("len"), int):
        cut = f"<div class='fb-insp-caption'>first {_num(len(text))} of {_num(meta['len'])} characters</div>"
    return f"{cut}<pre class='fb-insp-text'>{esc(text)}</pre>"


def _repr_body(meta: Dict[str, Any], sample: Any, plots: str, full: bool) -> str:
    return f"<pre class='fb-insp-repr'>{esc(meta.get('repr', ''))}</pre>"


def tree_html(node: List[Any], *, open_levels: int = 1) -> str:
    """A preview tree (``[label, type, repr, len, children, more, live]``) as nested details."""
    return f"<ul class='fb-tree'>{_node_html(node, open_levels, top=True)}</ul>"


def _node_html(node: List[Any], open_levels: int, top: bool = False) -> str:
    label, type_, text, length, children, more, live = (node + [False] * 7)[:7]
    key = f"<span class='fb-key'>{esc(label)}</span> " if label and not top else ""
    count = f" <span class='fb-len'>({_num(length)})</span>" if length is not None else ""
    badge = "<span class='fb-badge fb-live'>live</span>" if live else ""
    kind = f"<span class='fb-type'>{esc(type_)}</span>"
    if children is None:
        return f"<li class='fb-leaf'>{key}<span class='fb-val'>{esc(text)}</span> {kind}{badge}</li>"
    inner = "".join(_node_html(c, open_levels - 1) for c in children)
    if more:
        inner += f"<li class='fb-more'>… {_num(more)} more (load all to see them)</li>"
    if not children and not more:
        inner = "<li class='fb-more'>(empty)</li>"
    opened = " open" if open_levels > 0 else ""
    summary = f"{key}{kind}{count}{badge} <span class='fb-val fb-dim'>{esc(text)}</span>"
    return f"<li><details{opened}><summary>{summary}</summary><ul>{inner}</ul></details></li>"


def _tree_body(meta: Dict[str, Any], sample: Any, plots: str, full: bool) -> str:
    if not isinstance(sample, list):
        return _repr_body(meta, sample, plots, full)
    cut = "<div class='fb-insp-caption'>preview cut short: load all for the rest</div>" if meta.get("cut") else ""
    return cut + tree_html(sample, open_levels=2)


_BODIES = {
    "dataframe": _table_body,
    "series": _table_body,
    "ndarray": _array_body,
    "image": _image_body,
    "text": _text_body,
    "mapping": _tree_body,
    "sequence": _tree_body,
    "object": _tree_body,
}

