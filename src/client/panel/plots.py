"""Small plots for the inspector: a line for a 1-D array, an image for a 2-D one.

Two renderers (docs/panel.md, "Plots"):

* **SVG, our own** (the default): an inline ``<svg>`` with the line as a path, or the
  image as an embedded PNG (encoded here with zlib, coloured with viridis) and a colour
  bar. No dependency, a few milliseconds, and it scales with the panel.
* **matplotlib**, only when it is importable in the notebook and either asked for
  (``plots="matplotlib"``) or already imported by the user (``plots="auto"``): then the
  plots look like the user's own. Importing it just for the panel would cost the kernel
  about a second, and a figure costs tens of milliseconds per pause.

Inputs are the samples bridge/previews.py makes: lists of floats, 8-bit pixel bytes.
"""

from __future__ import annotations

import base64
import math
import struct
import sys
import zlib
from typing import Any, Dict, List, Optional, Sequence

from ..display import esc

#: viridis as a polynomial in t (a published 6th-degree fit, error < 1/255 per channel).
_VIRIDIS = (
    (0.2777273272234177, 0.005407344544966578, 0.3340998053353061),
    (0.1050930431085774, 1.404613529898575, 1.384590162594685),
    (-0.3308618287255563, 0.214847559468213, 0.09509516302823659),
    (-4.634230498983486, -5.799100973351585, -19.33244095627987),
    (6.228269936347081, 14.17993336680509, 56.69055260068105),
    (4.776384997670288, -13.74514537774601, -65.35303263337234),
    (-5.435455855934631, 4.645852612178535, 26.3124352495832),
)


def _viridis_channel(channel: int) -> bytes:
    out = bytearray(256)
    for i in range(256):
        t, acc = i / 255.0, 0.0
        for coeffs in reversed(_VIRIDIS):
            acc = acc * t + coeffs[channel]
        out[i] = max(0, min(255, int(round(acc * 255))))
    return bytes(out)


_LUT = [_viridis_channel(c) for c in range(3)]


def backend(choice: str) -> str:
    """The renderer to use for ``choice`` ("auto", "svg" or "matplotlib")."""
    if choice == "svg":
        return "svg"
    if choice == "matplotlib" or "matplotlib.pyplot" in sys.modules:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "svg"
        return "matplotlib"
    return "svg"


def png(pixels: bytes, width: int, height: int, channels: int) -> bytes:
    """A PNG of 8-bit ``pixels`` (row-major; 1 channel is coloured with viridis)."""
    if channels == 1:
        rgb = bytearray(width * height * 3)
        for c in range(3):
            rgb[c::3] = pixels.translate(_LUT[c])
        data, channels = bytes(rgb), 3
    else:
        data = pixels
    stride = width * channels
    raw = b"".join(b"\x00" + data[y * stride:(y + 1) * stride] for y in range(height))
    color_type = {3: 2, 4: 6}[channels]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _fmt(x: float) -> str:
    if x == 0 or (1e-3 <= abs(x) < 1e5):
        return f"{x:.4g}"
    return f"{x:.2e}"


def line_svg(y: Sequence[float], x: Optional[Sequence[float]] = None, *, n: Optional[int] = None,
             width: int = 420, height: int = 150) -> str:
    """A line plot of ``y`` (at ``x``, default 0..len-1) as inline SVG; NaN and inf break the line."""
    xs: Sequence[float] = x if x is not None else range(len(y))
    finite = [v for v in y if v is not None and math.isfinite(v)]
    if not finite:
        return "<div class='fb-plot-empty'>(no finite values to plot)</div>"
    lo, hi = min(finite), max(finite)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = (xs[0], xs[-1]) if len(xs) > 1 else (0, 1)
    x1 = x1 if x1 != x0 else x0 + 1
    left, right, top, bottom = 56, 8, 8, 20
    pw, ph = width - left - right, height - top - bottom
    parts: List[str] = []
    pen = "M"
    for xv, yv in zip(xs, y):
        if yv is None or not math.isfinite(yv):
            pen = "M"
            continue
        px = left + (xv - x0) / (x1 - x0) * pw
        py = top + (hi - yv) / (hi - lo) * ph
        parts.append(f"{pen}{px:.1f},{py:.1f}")
        pen = "L"
    last = n - 1 if n else x1
    ticks = "".join(
        f"<text x='{left - 4}' y='{top + f * ph + 4:.1f}' text-anchor='end'>{esc(_fmt(v))}</text>"
        f"<line x1='{left}' x2='{left + pw}' y1='{top + f * ph:.1f}' y2='{top + f * ph:.1f}' class='fb-grid'/>"
        for f, v in ((0.0, hi), (0.5, (hi + lo) / 2), (1.0, lo)))
    return (f"<svg class='fb-plot fb-plot-line' width='100%' viewBox='0 0 {width} {height}' "
            f"style='max-width:{width * 1.4:.0f}px' "
            f"xmlns='http://www.w3.org/2000/svg' role='img' aria-label='line plot'>"
            f"<g class='fb-axis'>{ticks}"
            f"<text x='{left}' y='{height - 4}'>{esc(_fmt(x0))}</text>"
            f"<text x='{left + pw}' y='{height - 4}' text-anchor='end'>{esc(_fmt(last))}</text></g>"
            f"<path class='fb-line' d='{' '.join(parts)}'/></svg>")


def image_svg(sample: Dict[str, Any], *, width: int = 320) -> str:
    """A 2-D array's pixels (bridge/previews.py) as inline SVG: the image and a colour bar."""
    w, h, channels = sample["w"], sample["h"], sample["channels"]
    data = base64.b64encode(png(sample["pixels"], w, h, channels)).decode("ascii")
    scale = min(width / w, 260 / h)
    iw, ih = max(1, round(w * scale)), max(1, round(h * scale))
    bar = ""
    total_w = iw + 8
    if channels == 1:
        ramp = base64.b64encode(png(bytes(range(255, -1, -1)), 1, 256, 1)).decode("ascii")
        bar = (f"<image x='{iw + 10}' y='0' width='12' height='{ih}' preserveAspectRatio='none' "
               f"href='data:image/png;base64,{ramp}'/>"
               f"<g class='fb-axis'><text x='{iw + 26}' y='10'>{esc(_fmt(sample['vmax']))}</text>"
               f"<text x='{iw + 26}' y='{ih}'>{esc(_fmt(sample['vmin']))}</text></g>")
        total_w = iw + 90
    return (f"<svg class='fb-plot fb-plot-image' width='100%' viewBox='0 0 {total_w} {ih}' "
            f"style='max-width:{total_w}px' "
            f"xmlns='http://www.w3.org/2000/svg' role='img' aria-label='image plot'>"
            f"<image x='0' y='0' width='{iw}' height='{ih}' preserveAspectRatio='none' "
            f"style='image-rendering:pixelated' href='data:image/png;base64,{data}'/>{bar}</svg>")


def _matplotlib_png(draw: Any) -> str:
    import io

    from matplotlib.figure import Figure  # no pyplot: no backend chosen, nothing global changes

    fig = Figure(figsize=(4.2, 1.8), dpi=100)
    draw(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return f"<img class='fb-plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}'/>"


def plot_html(meta: Dict[str, Any], sample: Dict[str, Any], choice: str = "auto") -> str:
    """The plot of an array preview (``meta["plot"]`` is "line" or "image"), as HTML."""
    kind = meta.get("plot")
    if backend(choice) == "matplotlib":
        if kind == "line":
            def draw(fig: Any) -> None:
                ax = fig.add_subplot()
                ax.plot(sample["x"] if sample.get("x") is not None else range(len(sample["y"])), sample["y"], lw=1)
            return _matplotlib_png(draw)
        if kind == "image":
            import numpy as np

            def draw(fig: Any) -> None:
                shape = (sample["h"], sample["w"]) + ((sample["channels"],) if sample["channels"] > 1 else ())
                ax = fig.add_subplot()
                im = ax.imshow(np.frombuffer(sample["pixels"], dtype=np.uint8).reshape(shape), aspect="auto")
                if sample["channels"] == 1:
                    fig.colorbar(im, ax=ax)
            return _matplotlib_png(draw)
    if kind == "line":
        return line_svg(sample["y"], sample.get("x"), n=sample.get("n"))
    if kind == "image":
        return image_svg(sample)
    return ""
