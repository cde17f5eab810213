"""A big array's write-back: the target reads it for the conflict check while the notebook
reads it for its changes (``mount_check``, bridge/mount_state.py ``check_ahead``).

The digests the check leaves serve only the write-back that comes right after it on the
paused thread: any request between them (an ``exec`` that changes the array) means the
write-back hashes again, so a change made since the mount is still refused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bridge import mount_state
from client import WriteBackConflict, jump_context
from client.mount_graph import CHECK_AHEAD_BYTES

N = CHECK_AHEAD_BYTES // 8 * 2  # float64 elements: twice the size that gets a check ahead


class _Pause:
    """What check_ahead needs of a pause: a key, and how many requests it has served."""

    served = 0


def test_checked_digests_serve_only_the_next_request_of_the_same_mount():
    pause, arr = _Pause(), np.zeros(N)
    before = mount_state.version(arr)
    pause.served = 1
    mount_state.check_ahead(pause, 7, [arr])
    arr[5] = 1.0  # only another thread could do this between two requests: the cache cannot see it
    pause.served = 2
    assert mount_state.version(arr, mount_state.digests_for_write(pause, 7)) == before  # the check's digests
    assert mount_state.version(arr, mount_state.digests_for_write(pause, 7)) != before  # used once only

    mount_state.check_ahead(pause, 7, [arr])
    arr[6] = 1.0
    pause.served = 4  # a request ran between the check and the write-back
    assert mount_state.version(arr, mount_state.digests_for_write(pause, 7)) == mount_state.version(arr)

    changed = mount_state.version(arr)
    mount_state.check_ahead(pause, 7, [arr])
    arr[7] = 1.0
    pause.served = 5
    assert mount_state.version(arr, mount_state.digests_for_write(pause, 8)) != changed  # another mount's


def test_checked_digests_never_match_a_new_object_at_the_same_address():
    pause = _Pause()
    arr = np.zeros(N)
    mount_state.check_ahead(pause, 1, [arr])
    cache = mount_state.digests_for_write(pause, 1)  # pause.served did not move: not for this request
    assert type(cache) is mount_state.DigestCache
    pause.served = 0
    mount_state.check_ahead(pause, 1, [arr])
    del arr
    other = np.ones(N)  # the allocator may give it the freed array's address (and id)
    pause.served = 1
    cache = mount_state.digests_for_write(pause, 1)
    assert mount_state.version(other, cache) == mount_state.version(other)


JOB = f"""
import json, bridge
import numpy as np
def work():
    big = np.zeros({N})
    alias, address = big, big.ctypes.data
    bridge.set_trace()
    print("RESULT " + json.dumps([big is alias, big.ctypes.data == address, float(big[10]), float(big[11]),
                                  int(np.count_nonzero(big))]), flush=True)
work()
"""


def result_of(t) -> list:
    out = t.wait_output("RESULT ")
    return json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])


def test_big_array_write_back_checked_ahead_lands_in_the_same_buffer(target, attach_to):
    t = target(JOB)
    s = attach_to(t)
    for value in (5.0, 6.0):  # twice: the second write-back's check follows the first's
        ns: dict = {}
        with jump_context(s, namespace=ns, names=["big"], size_limit=None) as m:
            ns["big"][10] = value
        assert m.sent_bytes < 1 << 20, m.sent_bytes  # one block, not the array
    s.cont()
    assert result_of(t) == [True, True, 6.0, 0.0, 1]


def test_a_change_made_in_the_target_since_the_mount_is_still_refused(target, attach_to):
    t = target(JOB)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(WriteBackConflict) as info:
        with jump_context(s, namespace=ns, names=["big"], size_limit=None):
            ns["big"][10] = 5.0
            s.exec("big[11] = 7.0")  # the same buffer, changed behind the mount
    assert info.value.names == ["big"]
    s.cont()
    assert result_of(t) == [True, True, 0.0, 7.0, 1]  # nothing of the refused write-back landed
