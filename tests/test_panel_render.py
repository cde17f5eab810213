"""Pure parts of the DebugPanel, in process: value previews (bridge/previews.py), the
inspector's HTML, plots (our SVG and PNG, and matplotlib where it is installed) and
source highlighting. No target, no kernel."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib

import pytest

from bridge.previews import Limits, preview, short_repr
from client.panel.highlight import highlight_lines
from client.panel.inspect_render import inspector_html, tree_html
from client.panel.plots import image_svg, line_svg, plot_html, png

np = pytest.importorskip("numpy")


def _png_size(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color


def test_png_is_a_valid_image_of_the_pixels():
    pixels = bytes(range(256)) * 4  # 256 x 4, one channel: coloured with viridis
    data = png(pixels, 256, 4, 1)
    assert _png_size(data) == (256, 4, 8, 2)
    length = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41:41 + length])
    assert len(raw) == 4 * (1 + 256 * 3) and raw[0] == 0  # each row: filter byte 0, then RGB
    assert raw[1:4] == bytes((71, 1, 85)) and raw[-3:] == bytes((252, 231, 33))  # viridis' two ends
    assert _png_size(png(bytes(2 * 3 * 3), 2, 3, 3))[:2] == (2, 3)


def test_line_plot_keeps_peaks_and_breaks_at_nan():
    y = np.zeros(1_000_000)
    y[123_457] = 50.0  # one spike: min/max decimation must keep it
    meta, sample = preview(y)
    assert meta["plot"] == "line" and len(sample["y"]) <= 2000 and max(sample["y"]) == 50.0
    assert sample["bucket"] == 1000 and sample["n"] == 1_000_000
    svg = line_svg([1.0, 2.0, float("nan"), 3.0, 4.0])
    root = ET.fromstring(svg)
    path = root.find("{http://www.w3.org/2000/svg}path").get("d")
    assert path.count("M") == 2 and path.count("L") == 2  # two segments around the NaN
    assert "no finite values" in line_svg([float("nan")])


def test_array_stats_skip_nan_and_inf_and_sample_big_arrays():
    meta, _ = preview(np.array([1.0, np.nan, 3.0, np.inf, -np.inf]))
    assert meta["stats"]["nan"] == 1 and meta["stats"]["inf"] == 2
    assert meta["stats"]["min"] == 1.0 and meta["stats"]["max"] == 3.0 and meta["stats"]["mean"] == 2.0
    meta, _ = preview(np.arange(10_000), Limits(stats_elements=1000))
    assert meta["stats"]["sampled"] == 1000 and meta["stats"]["count"] == 10_000
    meta, _ = preview(np.arange(12).reshape(3, 4)[:, ::2], Limits(stats_elements=4))  # not contiguous
    assert meta["stats"]["sampled"] <= 6
    meta, sample = preview(np.array(["a", "b"]))
    assert "stats" not in meta and sample is None and "'a'" in meta["repr"]


def test_image_preview_of_2d_and_rgb_arrays():
    grid = np.outer(np.arange(600.0), np.ones(300))
    grid[0, 0] = np.nan
    meta, sample = preview(grid)
    assert meta["plot"] == "image" and sample["step"] == [3, 2] and (sample["w"], sample["h"]) == (150, 200)
    assert len(sample["pixels"]) == 150 * 200 and sample["pixels"][0] == 0 and sample["vmax"] == 597.0  # of the rows shown
    root = ET.fromstring(image_svg(sample))
    assert len(root.findall("{http://www.w3.org/2000/svg}image")) == 2  # the image and its colour bar
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    meta, sample = preview(rgb)
    assert sample["channels"] == 3 and sample["pixels"][:3] == b"\xff\x00\x00"


def test_tree_previews_are_bounded():
    value = {"k": list(range(1000)), "deep": [[[[["bottom"]]]]], "s": {1, 2}}
    meta, tree = preview(value, Limits(items=10, depth=2, nodes=30))
    assert meta["kind"] == "mapping" and meta["len"] == 3
    k = tree[4][0]
    assert k[0] == "'k'" and k[3] == 1000 and len(k[4]) == 10 and k[5] == 990
    deep = tree[4][1]
    assert deep[4][0][4] is None and deep[4][0][3] == 1  # below the depth: its length, no items
    meta, tree = preview(list(range(100)), Limits(items=100, nodes=5))
    assert len(tree[4]) == 5 and tree[5] == 95 and meta["cut"]


def test_previews_never_raise_and_stay_small():
    class Hostile:
        def __getattr__(self, name):
            raise RuntimeError(name)

        def __repr__(self):
            raise ValueError("no")

    meta, _ = preview(Hostile())
    assert meta["kind"] == "other" and "Hostile" in meta["repr"]
    class Big(bytes):  # the full repr of a big bytes value is never made, only of a slice
        calls = 0

        def __repr__(self):
            Big.calls += 1
            return super().__repr__()

    assert len(short_repr(Big(b"x" * 1_000_000), 100)) <= 100 and Big.calls == 0
    assert len(short_repr("y" * 1_000_000, 100)) <= 100
    meta, sample = preview(object(), opaque=lambda v: "<live thing>")
    assert meta["repr"] == "<live thing>" and sample is None


def test_inspector_html_escapes_what_came_from_the_target():
    evil = "<script>alert(1)</script>"
    html = inspector_html(evil, {"kind": "other", "type": evil, "repr": evil, "live": True}, None)
    assert "<script>" not in html and "&lt;script&gt;" in html and "live reference" in html
    tree = ["", "dict", evil, 1, [[evil, "str", evil, 3, None, 0, False]], 0, False]
    assert "<script>" not in tree_html(tree)
    meta, sample = preview({"a": 1})
    assert "fb-tree" in inspector_html("x", meta, sample)
    meta, sample = preview("z" * 30_000)
    assert "first 20,000 of 30,000 characters" in inspector_html("s", meta, sample)


def test_dataframe_preview_renders_as_pandas_table():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": range(300), "b": ["<b>x</b>"] * 300})
    meta, sample = preview(df)
    assert meta["shape"] == [300, 2] and len(sample) == 50 and meta["dtypes"][0] == ["a", "int64"]
    html = inspector_html("df", meta, sample)
    assert "50 of 300 rows" in html and "dataframe" in html and "<b>x</b>" not in html


def test_matplotlib_plots_when_asked():
    pytest.importorskip("matplotlib")
    meta, sample = preview(np.linspace(0, 1, 50))
    assert plot_html(meta, sample, "matplotlib").startswith("<img class='fb-plot' src='data:image/png;base64,")
    meta, sample = preview(np.eye(20))
    assert "data:image/png;base64," in plot_html(meta, sample, "matplotlib")
    assert plot_html(meta, sample, "svg").startswith("<svg")


def test_highlighted_lines_match_the_source_lines():
    source = 'def f(x):  # <comment>\n    """doc\n    string"""\n    return x < 2\n\n'
    lines = highlight_lines(source)
    assert len(lines) == len(source.splitlines())
    assert "class='fb-k'>def<" in lines[0] and "&lt;comment&gt;" in lines[0]
    assert "fb-s" in lines[2] and "&lt;" in lines[3]
    assert re.sub(r"<[^>]+>", "", lines[3]).replace("&lt;", "<") == "    return x < 2"
