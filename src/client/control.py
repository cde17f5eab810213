"""Session methods of the debugger proper: breakpoints, pause, watches (a mixin)."""


class DebugControl:
    """Mixed into Session: breakpoints, pause on demand, watch expressions."""
