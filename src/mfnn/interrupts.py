"""Raising KeyboardInterrupt from a signal handler without losing it.

Python runs a signal handler between two bytecodes of the main thread, wherever it is. If
that is inside a garbage-collector callback (JAX registers one, ``_xla_gc_callback``), a
``__del__`` method or a weakref callback, an exception raised there is printed as
"Exception ignored in ..." with a traceback and dropped: the interrupt is lost and the run
goes on. `interrupt` detects those frames and, instead of raising, sends the same signal
to this process again a moment later, when the main thread has left them.
"""

from __future__ import annotations

import gc
import os
import threading
from types import FrameType, FunctionType

__all__ = ["interrupt", "in_unraisable_context"]

RESEND_S = 0.02  # the main thread leaves a gc callback or finalizer within microseconds
_FINALIZERS = frozenset({"__del__", "_xla_gc_callback"})


def in_unraisable_context(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it is a gc callback or a finalizer, where an
    exception would be printed and dropped instead of propagated."""
    callbacks = {cb.__code__ for cb in gc.callbacks if isinstance(cb, FunctionType)}
    while frame is not None:
        code = frame.f_code
        if code in callbacks or code.co_name in _FINALIZERS:
            return True
        frame = frame.f_back
    return False


def interrupt(signum: int, frame: FrameType | None) -> None:
    """Raise KeyboardInterrupt in the main thread, or, when ``frame`` is one where it
    would be dropped (`in_unraisable_context`), send ``signum`` to this process again
    after `RESEND_S` seconds (the handler then runs again, outside that frame)."""
    if in_unraisable_context(frame):
        timer = threading.Timer(RESEND_S, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt
