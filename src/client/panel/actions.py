"""The DebugPanel's actions on the target: stepping and pausing, mount, write back, discard
(a mixin of client.panel.core.DebugPanel, run on its worker thread)."""

from __future__ import annotations

import sys
import warnings
from typing import Any, Dict

#: How long the pause button waits for the pause to land before saying it is pending.
PAUSE_WAIT_S = 2.0


def notebook_namespace() -> Dict[str, Any]:
    """Where a mount puts variables: IPython's user namespace, else ``__main__``'s globals."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else vars(sys.modules["__main__"])


class PanelActions:
    """Mixed into DebugPanel; uses its ``_attached``, ``_say``, ``_show_state``,
    ``_queue_refresh`` and ``mount``."""

    mount: Any

    def _control(self, action: str) -> None:
        session = self._attached()  # type: ignore[attr-defined]
        if action == "pause":
            # The pause event updates the panel; a pause that cannot land at once (the
            # thread is in a long C call) is said in the panel, not as a kernel warning.
            # catch_warnings is process-wide, held here only for this one call.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session.pause(wait=PAUSE_WAIT_S)
            self._say(str(caught[-1].message) if caught else "")  # type: ignore[attr-defined]
            return
        getattr(session, action)()
        self._say("")  # type: ignore[attr-defined]
        self._show_state()  # type: ignore[attr-defined]

    def _mount(self) -> None:
        try:
            from ..mount import jump_context
        except ImportError:
            self._say("mount is not available in this framebridge (client.mount is missing)",  # type: ignore[attr-defined]
                      error=True)
            return
        mount = jump_context(self._attached(), namespace=notebook_namespace())  # type: ignore[attr-defined]
        mount.__enter__()
        self.mount = mount
        self._show_state()  # type: ignore[attr-defined]  # enables write back / discard
        names = list(getattr(mount, "mounted", []))
        live = list(getattr(mount, "live", []))
        text = f"mounted {', '.join(names) or 'nothing'} into the notebook namespace"
        if live:
            text += f" ({', '.join(live)} live: changes through them happen in the target at once)"
        self._say(text + "; change them in cells, then write back or discard")  # type: ignore[attr-defined]

    def _unmount(self, write_back: bool) -> None:
        mount = self.mount
        if mount is None:
            self._say("nothing is mounted")  # type: ignore[attr-defined]
            return
        if write_back:
            written = mount.commit()  # a conflict raises here and leaves the mount in place to discard
        else:
            mount.discard()
        mount.__exit__(None, None, None)  # restores the notebook's namespace (nothing more to write)
        self.mount = None
        if not write_back:
            self._say("discarded: nothing written back; the notebook's namespace is restored")  # type: ignore[attr-defined]
        else:
            parts = [f"{label} {', '.join(names)}" for label, names in (
                ("changed", getattr(written, "changed", [])), ("added", getattr(written, "added", [])),
                ("deleted", getattr(written, "deleted", []))) if names]
            self._say("wrote back: " + ("; ".join(parts) if parts else "nothing had changed"))  # type: ignore[attr-defined]
        self._show_state()  # type: ignore[attr-defined]
        self._queue_refresh()  # type: ignore[attr-defined]

    def _discard_mount(self) -> None:
        """On close: an open mount is discarded (closing is not a decision to write back)."""
        if self.mount is not None:
            try:
                self.mount.discard()
                self.mount.__exit__(None, None, None)
            except Exception:
                pass
            self.mount = None
