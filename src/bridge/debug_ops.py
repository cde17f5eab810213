"""Server ops of the debugger proper: breakpoints, pause on demand, watch expressions.

(Being filled in by the debugger-control work; the module exists so the op registry
can import it.)
"""
