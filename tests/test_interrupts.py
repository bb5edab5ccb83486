"""`mfnn.interrupts`: a stop signal that lands in a gc callback is sent again, not lost."""

import gc
import signal
import sys
import time

import pytest

from mfnn import interrupts
from mfnn.interrupts import in_unraisable_context, interrupt


def test_a_signal_in_a_gc_callback_is_sent_again(monkeypatch):
    """Inside a gc callback `interrupt` does not raise (Python would print and drop the
    exception there) but sends the same signal to this process again a moment later."""
    sent, outcome = [], []
    monkeypatch.setattr(interrupts.os, "kill", lambda pid, sig: sent.append((pid, sig)))

    def callback(phase, info):
        if phase == "start" and not outcome:
            frame = sys._getframe()
            outcome.append(in_unraisable_context(frame))
            try:
                interrupt(signal.SIGINT, frame)
                outcome.append("deferred")
            except KeyboardInterrupt:
                outcome.append("raised")

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.005)
    assert outcome == [True, "deferred"], outcome
    assert sent == [(interrupts.os.getpid(), signal.SIGINT)], sent


def test_ordinary_code_raises_at_once():
    assert not in_unraisable_context(sys._getframe())
    with pytest.raises(KeyboardInterrupt):
        interrupt(signal.SIGINT, sys._getframe())


def test_finalizer_frames_are_detected():
    found = []

    class Probe:
        def __del__(self):
            found.append(in_unraisable_context(sys._getframe()))

    Probe()
    gc.collect()
    assert found == [True]
