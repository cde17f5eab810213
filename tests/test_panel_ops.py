"""The target-side ops behind the DebugPanel's views, end to end against real targets:
``source`` (linecache in the target, cached by version) and ``inspect`` (a bounded
preview through the value path). ``output`` is in tests/test_capture.py."""

from __future__ import annotations

import os

import pytest

from client import proxy
from client.errors import RemoteError


def test_source_comes_from_the_target_and_is_sent_once_per_version(target, attach_to):
    t = target("""
        import bridge

        def work():
            x = 41
            bridge.set_trace()
            return x

        work()
    """)
    s = attach_to(t)
    result, frames = s.frame_request("source")
    text = proxy.load(s.refs, frames)
    assert result["line"] == 6 and result["function"] == "work" and result["first"] == 1
    assert result["path"] == os.path.realpath(t.script) and result["available"]
    assert text.splitlines()[5].strip() == "bridge.set_trace()" and result["total"] == len(text.splitlines())
    # The version the client has: no text again.
    again, frames = s.frame_request("source", {"known": result["version"]})
    assert frames == [] and again["version"] == result["version"]
    # The file gone from the target's disk: the lines linecache read are still served.
    t.script.unlink()
    gone, frames = s.frame_request("source", {"known": ""})
    assert proxy.load(s.refs, frames) == text and gone["available"]
    s.cont()
    assert t.wait_exit(20) == 0


def test_source_of_code_that_only_linecache_knows(target, attach_to):
    """Code registered in linecache (as IPython does for cells): no file anywhere."""
    t = target("""
        import bridge, linecache
        src = "def f():\\n    x = 41\\n    bridge.set_trace()\\n    return x\\n"
        linecache.cache["<generated-1>"] = (len(src), None, src.splitlines(True), "<generated-1>")
        exec(compile(src, "<generated-1>", "exec"))
        f()
        exec(compile("y = 2\\nbridge.set_trace()\\n", "<nowhere>", "exec"))
    """)
    s = attach_to(t)
    result, frames = s.frame_request("source")
    assert result["file"] == "<generated-1>" and result["path"] == "<generated-1>"
    assert proxy.load(s.refs, frames).splitlines()[2].strip() == "bridge.set_trace()"
    assert result["version"].startswith("c")  # no mtime: versioned by its contents
    s.cont()
    s.wait(20)
    result, frames = s.frame_request("source")
    assert result["file"] == "<nowhere>" and not result["available"] and proxy.load(s.refs, frames) == ""
    s.cont()
    assert t.wait_exit(20) == 0


def test_inspect_previews_within_the_cap(target, attach_to):
    pytest.importorskip("pandas")
    t = target("""
        import bridge
        import pandas as pd

        def work():
            wide = pd.DataFrame({"text": [f"{i}" + "y" * 10_000 for i in range(200)], "n": range(200)})
            nested = {"a": [1, 2, {"b": list(range(100))}]}
            class Broken:
                def __repr__(self):
                    raise RuntimeError("no repr")
            broken = Broken()
            bridge.set_trace()

        work()
    """)
    s = attach_to(t)
    meta, frames = s.frame_request("inspect", {"expr": "wide", "cap": 100_000})
    sample = proxy.load(s.refs, frames)
    assert meta["kind"] == "dataframe" and meta["shape"] == [200, 2] and meta["sample"] == "sent"
    assert 0 < len(sample) < 50 and sum(len(f) for f in frames) <= 100_000  # rows halved until it fit
    meta, frames = s.frame_request("inspect", {"expr": "nested"})
    tree = proxy.load(s.refs, frames)
    assert meta["kind"] == "mapping" and tree[4][0][0] == "'a'" and tree[4][0][3] == 3
    b = tree[4][0][4][2][4][0]  # a -> [2] -> 'b': beyond the preview's depth, its items are not sent
    assert b[0] == "'b'" and b[3] == 100 and b[4] is None
    meta, frames = s.frame_request("inspect", {"expr": "broken"})
    assert "Broken" in meta["repr"] and meta["live"]  # a repr that raises: still a preview
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        s.frame_request("inspect", {"expr": "1 / 0"})
    with pytest.raises(RemoteError, match="cannot inspect"):
        s.frame_request("inspect", {"expr": "x ="})
    s.cont()
    assert t.wait_exit(20) == 0


def test_a_view_plugs_in(target, attach_to):
    """docs/panel.md's example view, added with extra_views, is built, refreshed and polled."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    import ipywidgets as widgets
    from conftest import wait_until

    from client.panel import DebugPanel, PanelView

    class ThreadsView(PanelView):
        name, title, region = "threads", "threads", "left"
        poll_interval = 0.5

        def build(self):
            self.html = widgets.HTML()
            self.polls = 0
            return self.html

        def refresh(self, frame):
            self.poll()

        def poll(self):
            self.polls += 1
            session = self.host.session
            if session is not None:
                rows = session.threads()
                self.html.value = "<br>".join(f"{t['name']}: {t['state']}" for t in rows)

    t = target("import bridge\nbridge.set_trace()\n")
    s = attach_to(t)
    panel = DebugPanel(s, extra_views=[ThreadsView])
    try:
        view = panel.view("threads")
        wait_until(lambda: "MainThread: paused" in view.html.value, what="the view refreshed")
        polls = view.polls
        wait_until(lambda: view.polls > polls + 1, what="the view polled")
        assert any("fb-view-threads" in box._dom_classes for box in panel._containers)
        with pytest.raises(ValueError, match="unique"):
            DebugPanel(s, extra_views=[ThreadsView, ThreadsView])
    finally:
        panel.close()
    s.cont()
    assert t.wait_exit(20) == 0
