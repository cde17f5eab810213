"""Bounded previews of values: what the DebugPanel's inspector shows, small enough to send.

:func:`preview` turns any value into ``(meta, sample)``: ``meta`` is JSON (kind, type,
shape, dtypes, statistics, what was cut), ``sample`` a small plain value that travels
through the normal value path (a DataFrame's first rows, a downsampled array as lists or
bytes, a tree of short reprs, PNG bytes). No numpy or pandas import here: a value of
theirs means they are loaded already. Pure functions, no sockets: the target's ``inspect``
op (inspect_ops.py) and the notebook (for a value loaded in full) use the same code.
"""

from __future__ import annotations

import io
import itertools
import math
import reprlib
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["Limits", "preview", "short_repr", "type_name"]


@dataclass(frozen=True)
class Limits:
    """How much of a value a preview keeps."""

    rows: int = 50            # DataFrame / Series rows
    cols: int = 50            # DataFrame columns
    items: int = 50           # items per container in a tree
    depth: int = 3            # levels of a tree below the value
    nodes: int = 2000         # nodes of a tree in all
    points: int = 2000        # points of a 1-D plot
    side: int = 256           # pixels on the long side of a 2-D array's image
    text: int = 20000         # characters of a string
    thumbnail: int = 512      # pixels on the long side of an image
    stats_elements: int = 10_000_000  # array elements that statistics read exactly (else a sample)

    def full(self) -> "Limits":
        """Limits for a value loaded in full ("load all")."""
        return replace(self, rows=1000, items=500, depth=8, nodes=20000, points=4000, side=512, text=1_000_000)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 6, 8, 8, 6
_REPR.maxstring = _REPR.maxother = 200


def type_name(value: Any) -> str:
    """``module.Qualname`` of a value's type (just the name for builtins)."""
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def short_repr(value: Any, limit: int = 100) -> str:
    """A repr bounded in size (reprlib for containers, a slice for bytes) that never raises."""
    try:
        if isinstance(value, (bytes, bytearray)):
            text = repr(bytes(value[:limit]))
        elif isinstance(value, str):
            text = repr(value[:limit])
        else:
            text = _REPR.repr(value)
    except Exception as exc:
        text = f"<{type_name(value)} object; repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _module(name: str) -> Any:
    return sys.modules.get(name)


def _is(value: Any, module: str, attr: str) -> bool:
    mod = _module(module)
    cls = getattr(mod, attr, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(value, cls)


Opaque = Callable[[Any], Optional[str]]


def _never(value: Any) -> Optional[str]:
    return None


def preview(value: Any, limits: Limits = Limits(), *, is_live: Callable[[Any], bool] = lambda v: False,
            opaque: Opaque = _never) -> Tuple[Dict[str, Any], Any]:
    """``(meta, sample)`` of ``value`` within ``limits`` (see the module docstring).

    ``is_live``: whether a value can only be a live reference (it stays in the target).
    ``opaque``: for a value that must not be looked into (a notebook's proxy of a target
    object: every look is a round trip), the text to show for it; None for other values.
    """
    meta: Dict[str, Any] = {"type": type_name(value), "live": bool(is_live(value))}
    described = opaque(value)
    if described is not None:
        meta.update(kind="other", repr=described)
        return meta, None
    try:
        kind, sample = _dispatch(value, limits, meta, is_live, opaque)
    except Exception as exc:  # a preview must never break the inspector: the repr will do
        meta["error"] = f"{type(exc).__name__}: {exc}"
        kind, sample = "other", None
    meta["kind"] = kind
    meta.setdefault("repr", short_repr(value, 2000))
    return meta, sample


def _dispatch(value: Any, limits: Limits, meta: Dict[str, Any],
              is_live: Callable[[Any], bool], opaque: Opaque) -> Tuple[str, Any]:
    if _is(value, "pandas", "DataFrame"):  # (its repr formats the whole table: too slow here)
        meta["repr"] = f"DataFrame with {value.shape[0]} rows and {value.shape[1]} columns"
        return "dataframe", _dataframe(value, limits, meta)
    if _is(value, "pandas", "Series"):
        meta["repr"] = f"Series {short_repr(value.name, 60)} with {len(value)} values"
        return "series", _series(value, limits, meta)
    if _is(value, "numpy", "ndarray"):
        return "ndarray", _ndarray(value, limits, meta)
    image = _image(value, limits, meta)
    if image is not None:
        return "image", image
    if isinstance(value, str):
        meta["len"] = len(value)
        meta["cut"] = len(value) > limits.text
        meta["repr"] = short_repr(value, 200)
        return "text", value[: limits.text]
    if isinstance(value, (bytes, bytearray)):
        meta["len"] = len(value)
        return "text", short_repr(value, min(limits.text, 4000))
    if isinstance(value, (int, float, complex, bool)) or value is None:
        return "scalar", None
    if _children(value, 1) is not None:
        budget = [limits.nodes]
        tree = _tree(value, "", limits, limits.depth, budget, is_live, opaque)
        kind = "mapping" if isinstance(value, dict) or hasattr(value, "keys") else "sequence"
        if not isinstance(value, (dict, list, tuple, set, frozenset)) and hasattr(value, "__dict__"):
            kind = "object"
        meta["len"] = tree[3]
        meta["cut"] = budget[0] <= 0
        return kind, tree
    return "other", None


# --- tables ----------------------------------------------------------------------------------


def _dataframe(df: Any, limits: Limits, meta: Dict[str, Any]) -> Any:
    rows, cols = df.shape
    meta.update(shape=[int(rows), int(cols)],
                dtypes=[[str(c), str(t)] for c, t in itertools.islice(df.dtypes.items(), 500)],
                rows_shown=min(rows, limits.rows), cols_shown=min(cols, limits.cols))
    return df.iloc[: limits.rows, : limits.cols]


def _series(s: Any, limits: Limits, meta: Dict[str, Any]) -> Any:
    meta.update(shape=[int(len(s))], dtype=str(s.dtype), name=str(s.name), rows_shown=min(len(s), limits.rows))
    return s.iloc[: limits.rows].to_frame()


# --- arrays ----------------------------------------------------------------------------------


def _ndarray(arr: Any, limits: Limits, meta: Dict[str, Any]) -> Any:
    np = _module("numpy")
    meta.update(shape=[int(n) for n in arr.shape], dtype=str(arr.dtype), nbytes=int(arr.nbytes))
    meta["repr"] = short_repr(arr, 2000)
    kind = arr.dtype.kind
    if arr.size == 0 or kind not in "biuf":
        return None
    meta["stats"] = _stats(np, arr, limits)
    if arr.ndim == 1:
        meta["plot"] = "line"
        return _line(np, arr, limits.points)
    rgb = arr.ndim == 3 and arr.shape[2] in (3, 4)
    if arr.ndim == 2 or rgb:
        meta["plot"] = "image"
        return _pixels(np, arr, limits.side, rgb)
    return None


def _stats(np: Any, arr: Any, limits: Limits) -> Dict[str, Any]:
    """min, max, mean, std (of the finite values), NaN and inf counts; from an evenly spaced
    sample when the array is bigger than ``limits.stats_elements`` (``sampled`` says so)."""
    data = arr
    out: Dict[str, Any] = {"count": int(arr.size)}
    if arr.size > limits.stats_elements:
        step = math.ceil(arr.size / limits.stats_elements)
        data = arr.reshape(-1)[::step] if arr.flags.c_contiguous else arr.flat[::step]
        out["sampled"] = int(data.size)
    if data.dtype.kind == "b":
        out["true"] = int(np.count_nonzero(data))
        data = data.astype(np.int8)
    if data.dtype.kind == "f":
        finite_mask = np.isfinite(data)
        out["nan"] = int(np.count_nonzero(np.isnan(data)))
        out["inf"] = int(data.size - out["nan"] - np.count_nonzero(finite_mask))
        if out["nan"] or out["inf"]:
            data = data[finite_mask]
    if data.size:
        with np.errstate(all="ignore"):
            out.update(min=_num(data.min()), max=_num(data.max()), mean=_num(data.mean(dtype=np.float64)),
                       std=_num(data.std(dtype=np.float64)))
    return out


def _num(x: Any) -> Any:
    x = x.item() if hasattr(x, "item") else x
    return x if isinstance(x, int) else float(x)


def _line(np: Any, arr: Any, points: int) -> Dict[str, Any]:
    """Points of a line plot: every value, or the min and max of each of points/2 buckets
    (peaks survive the downsampling)."""
    y = arr.astype(np.float64) if arr.dtype.kind == "b" else arr
    n = int(y.shape[0])
    if n <= points:
        return {"x": None, "y": y.astype(np.float64).tolist(), "n": n}
    buckets = max(1, points // 2)
    width = n // buckets
    block = y[: width * buckets].reshape(buckets, width)
    lo, hi = np.fmin.reduce(block, axis=1), np.fmax.reduce(block, axis=1)
    ys = np.empty(buckets * 2, dtype=np.float64)
    ys[0::2], ys[1::2] = lo, hi
    starts = np.arange(buckets, dtype=np.int64) * width
    xs = np.empty(buckets * 2, dtype=np.int64)
    xs[0::2], xs[1::2] = starts, starts + width // 2
    return {"x": xs.tolist(), "y": ys.tolist(), "n": n, "bucket": width}


def _pixels(np: Any, arr: Any, side: int, rgb: bool) -> Dict[str, Any]:
    """A 2-D array (or an RGB(A) image array) as at most side x side 8-bit pixels: values
    scaled from [vmin, vmax] to 0..255 (NaN as 0), every ``step``-th row and column."""
    h, w = int(arr.shape[0]), int(arr.shape[1])
    sy, sx = max(1, math.ceil(h / side)), max(1, math.ceil(w / side))
    small = arr[::sy, ::sx]
    out: Dict[str, Any] = {"w": int(small.shape[1]), "h": int(small.shape[0]), "step": [sy, sx]}
    if rgb:
        data = small.astype(np.float64)
        if small.dtype.kind == "f" and np.nanmax(data) <= 1.0:
            data = data * 255.0
        out.update(channels=int(small.shape[2]), vmin=0, vmax=255)
        scaled = data
    else:
        data = small.astype(np.float64)
        finite = data[np.isfinite(data)]
        vmin = float(finite.min()) if finite.size else 0.0
        vmax = float(finite.max()) if finite.size else 0.0
        span = (vmax - vmin) or 1.0
        with np.errstate(all="ignore"):
            scaled = (data - vmin) * (255.0 / span)
        out.update(channels=1, vmin=vmin, vmax=vmax)
    with np.errstate(all="ignore"):
        pixels = np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0).astype(np.uint8)
    out["pixels"] = np.ascontiguousarray(pixels).tobytes()
    return out


# --- images ----------------------------------------------------------------------------------


def _image(value: Any, limits: Limits, meta: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """PNG bytes of an image: a PIL image (thumbnailed), a matplotlib figure, or anything
    with IPython's ``_repr_png_``; None for other values."""
    png: Any = None
    if _is(value, "PIL.Image", "Image"):
        meta.update(size=list(value.size), mode=str(value.mode))
        thumb = value.copy()
        thumb.thumbnail((limits.thumbnail, limits.thumbnail))
        if thumb.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
            thumb = thumb.convert("RGB")
        buf = io.BytesIO()
        thumb.save(buf, format="PNG")
        png = buf.getvalue()
    elif _is(value, "matplotlib.figure", "Figure"):
        buf = io.BytesIO()
        value.savefig(buf, format="png", dpi=72)
        png = buf.getvalue()
    elif callable(getattr(type(value), "_repr_png_", None)):
        png = value._repr_png_()
        if isinstance(png, tuple):  # (data, metadata), as IPython allows
            png = png[0]
    if not isinstance(png, (bytes, bytearray)) or not png:
        return None
    return {"format": "png", "data": bytes(png)}


# --- trees -----------------------------------------------------------------------------------


def _children(value: Any, limit: int) -> Optional[Tuple[int, List[Tuple[str, Any]]]]:
    """(how many children, the first ``limit`` as (label, value)); None for a leaf."""
    if isinstance(value, dict):
        items = list(itertools.islice(value.items(), limit))
        return len(value), [(short_repr(k, 60), v) for k, v in items]
    if isinstance(value, (list, tuple)):
        return len(value), [(f"[{i}]", value[i]) for i in range(min(limit, len(value)))]
    if isinstance(value, (set, frozenset)):
        return len(value), [("", v) for v in itertools.islice(value, limit)]
    if isinstance(value, (str, bytes, bytearray, int, float, complex, bool, type)) or value is None:
        return None
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and attrs:
        names = [n for n in itertools.islice(attrs, limit)]
        return len(attrs), [(f".{n}", attrs[n]) for n in names]
    return None


def _length(value: Any) -> Optional[int]:
    """len() of a builtin sized value (never a user's __len__: it could do anything)."""
    if isinstance(value, (str, bytes, bytearray, dict, list, tuple, set, frozenset)):
        return len(value)
    return None


def _tree(value: Any, label: str, limits: Limits, depth: int, budget: List[int],
          is_live: Callable[[Any], bool], opaque: Opaque) -> List[Any]:
    """``[label, type, short repr, length or None, children or None, children not shown, live]``."""
    described = opaque(value)
    if described is not None:
        return [label, type_name(value), described, None, None, 0, True]
    try:
        found = _children(value, limits.items) if depth > 0 or label == "" else None
    except RuntimeError:  # changed size while we read it (another thread): show it as a leaf
        found = None
    length = found[0] if found is not None else _length(value)
    node: List[Any] = [label, type_name(value), short_repr(value, 100), length, None, 0, bool(is_live(value))]
    if found is None or depth <= 0:
        return node
    total, items = found
    children = []
    for child_label, child in items:
        if budget[0] <= 0:
            break
        budget[0] -= 1
        children.append(_tree(child, child_label, limits, depth - 1, budget, is_live, opaque))
    node[4], node[5] = children, total - len(children)
    return node
