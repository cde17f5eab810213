"""Live references (client/proxy.py + bridge/refs.py) against a real target process."""

from __future__ import annotations

import gc
import time

import pytest

from client import is_live
from client.errors import RemoteError

TARGET = """
import io, threading, bridge

class Box:                       # a class of the target's __main__: only live in the notebook
    def __init__(self):
        self.items = [3, 1, 2]
        self.name = "box"
    def total(self):
        return sum(self.items)
    def __len__(self):
        return len(self.items)
    def __getitem__(self, i):
        return self.items[i]
    def __add__(self, other):
        return self.total() + other
    def __eq__(self, other):
        return isinstance(other, Box) and other.items == self.items

def gen():
    yield from ("a", "b", "c")

box = Box()
g = gen()
held = threading.Lock()
holder_started = threading.Event()

def hold():
    with held:
        holder_started.set()
        threading.Event().wait(60)

threading.Thread(target=hold, daemon=True).start()
holder_started.wait(5)
bridge.set_trace()
print("NAME", box.name, "ITEMS", box.items, flush=True)
"""

TABLE_SIZE = "len(__import__('bridge.refs', fromlist=['TABLE']).TABLE)"


def test_attributes_methods_and_special_methods(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    box = s.eval("box")
    assert is_live(box)
    assert box.name == "box" and box.items == [3, 1, 2]    # attributes come by value
    assert box.total() == 6                                # methods run in the target
    assert len(box) == 3 and box[0] == 3 and list(box) == [3, 1, 2]
    assert box + 4 == 10
    assert box == s.eval("box") and s.eval("box") is box  # one proxy per object
    box.name = "renamed"                                   # setattr in the target
    box.items.append(9)                                    # a copy: does not reach the target
    assert "Box object" in repr(box)
    with pytest.raises(AttributeError):
        box.missing
    with pytest.raises(IndexError):
        box[10]
    assert "total" in dir(box)
    s.cont()
    assert "NAME renamed ITEMS [3, 1, 2]" in t.wait_output("NAME")


def test_generator_iterates_in_the_target(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    g = s.eval("g")
    assert is_live(g)
    assert next(g) == "a"
    assert list(g) == ["b", "c"]
    assert s.eval("next(g, 'done')") == "done"


def test_display_probes_are_answered_locally(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    box = s.eval("box")
    sent = []
    real = s.frame_request

    def counting(op, *a, **k):
        sent.append(op)
        return real(op, *a, **k)

    s.frame_request = counting  # every proxy operation goes through it
    try:
        for probe in ("_repr_html_", "_repr_mimebundle_", "_ipython_display_", "_ipython_canary_method_should_not_exist_",
                      "__array__", "__length_hint__"):
            assert not hasattr(box, probe)
    finally:
        del s.frame_request
    assert sent == []
    s.frame_request = counting
    try:
        assert box.total() == 6  # what is forwarded is counted: the check above can fail
    finally:
        del s.frame_request
    assert sent and set(sent) == {"ref"}


def test_released_handles_go_back_in_a_batch_with_the_next_request(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    before = s.eval(TABLE_SIZE)
    box = s.eval("box")
    g = s.eval("g")
    assert s.eval(TABLE_SIZE) == before + 2
    registry = s.refs
    del box, g
    gc.collect()
    assert sorted(cell[0] for _, cell in registry._pending) == [1, 1]   # waiting, not sent from GC
    assert s.eval(TABLE_SIZE) == before + 2     # eval does not carry releases
    s.eval("box").total()       # this request carries the releases of the two dead proxies
    assert s.eval(TABLE_SIZE) == before + 1     # box again: held by the proxy just made
    gc.collect()
    registry.flush()
    assert s.eval(TABLE_SIZE) == before


def test_blocking_acquire_of_a_held_lock_times_out_instead_of_freezing(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    s.timeout = 2.0
    held = s.eval("held")
    start = time.monotonic()
    assert held.acquire() is False          # held by another target thread: bounded wait
    assert time.monotonic() - start < 2.0
    with pytest.raises(TimeoutError):
        with held:
            pass
    assert s.eval("1 + 1") == 2             # the paused thread still answers


def test_stale_and_foreign_references_are_clear_errors(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    box = s.eval("box")
    object.__setattr__(box, "_fb_ref", 12345)   # a handle the target never gave out
    with pytest.raises(RemoteError, match="not held by this process"):
        box.total()
    with pytest.raises(TypeError, match="only travels to its own target"):
        import pickle

        pickle.dumps(s.eval("g"))


def test_proxy_needs_a_paused_target(target, attach_to):
    t = target(TARGET.replace('print("NAME"', 'threading.Event().wait(30); print("NAME"'))
    s = attach_to(t)
    box = s.eval("box")
    s.cont()
    with pytest.raises(Exception) as info:
        box.total()
    assert type(info.value).__name__ == "NotPaused"
    assert "repr failed" in repr(box)       # repr never raises


def test_closing_a_session_releases_its_live_references(target, attach_to):
    # The object lives in a list, so freeing it needs no frame write (on 3.14 a value
    # replaced through the f_locals proxy stays referenced while the frame runs).
    t = target("""
        import bridge, weakref
        class Thing:            # defined in the target's __main__: always a live reference
            pass
        def f():
            holder = [Thing()]
            alive = weakref.ref(holder[0])
            bridge.set_trace()
        f()
    """)
    first = attach_to(t)
    proxy = first.eval("holder[0]")
    assert type(proxy).__name__ == "LiveRef"
    first.close()
    second = attach_to(t)
    second.exec("holder.clear()\nimport gc; gc.collect()")
    assert second.eval("alive() is None")  # the target's table no longer holds it
    second.cont()
    assert t.wait_exit(10) == 0
