"""Runs a blocking libsnapmig call so that Python stays in control.

ctypes releases the GIL during a foreign call, but the calling thread is
inside C until the call returns: Python's SIGINT handler only records the
signal, so Ctrl-C would be seen after a wait of minutes.  So each call that
talks to QEMU runs in a worker thread while the calling thread waits on it
in short slices.  An exception raised in the waiting thread (the
KeyboardInterrupt of SIGINT, or whatever another signal handler raises)
calls snapmig_interrupt(): the library stops the operation the way SIGINT
stops the command (a create is rolled back) and returns; the exception is
then raised again in the caller.

Progress callbacks run in that worker thread.  An exception raised in one
never crosses the C frame: the bridge keeps it, calls snapmig_interrupt()
and returns; the exception is raised again once the library has returned.
"""
import threading

from ctypes import c_void_p

from . import errors
from ._lib import PROGRESS_FN, decode_path, decode_text, lib

# How often the waiting thread looks up from its wait (seconds): a signal
# delivered to the worker thread only wakes the waiting one at its next
# look.
_SLICE = 0.1


class Progress:
    """The C progress callback over a Python callable
    PROGRESS(kind, name, done, total, finished)."""

    def __init__(self, progress):
        self.progress = progress
        self.exception = None
        self.cfunc = PROGRESS_FN(self._called) if progress else PROGRESS_FN()

    def _called(self, kind, name, done, total, finished, opaque):
        if self.exception is not None:
            return
        try:
            self.progress(decode_text(kind), decode_path(name), int(done),
                          int(total), bool(finished))
        except BaseException as e:  # noqa: B902 — nothing may cross C
            self.exception = e
            lib.snapmig_interrupt()


def _note(exc, text):
    add_note = getattr(exc, "add_note", None)     # Python 3.11+
    if add_note is not None:
        add_note(text)


_local = threading.local()


def owner():
    """The OWNER given to the run() whose worker thread this is (a progress
    callback's view), or None."""
    return getattr(_local, "owner", None)


def run(work, progress=None, owner=None, discard=None):
    """Calls WORK(err) in a worker thread, ERR a c_void_p for the
    snapmig_error out-parameter, and returns its result once WORK succeeded
    (a result that is not -1 nor NULL).  Raises the snapmig.Error of a
    failure, an exception of PROGRESS (a Progress), or an exception raised
    in the calling thread while it waited.  OWNER: the object the call is
    on, as owner() tells the worker thread.  DISCARD(result) frees the
    result of a call that succeeded when an exception is raised instead."""
    err = c_void_p()
    box = {}
    # The worker sets box["done"] and releases FINISHED when WORK returned.
    # Not Thread.join: when an exception (KeyboardInterrupt) is raised in
    # join's wait, 3.11's threading.py (its bpo-45274 branch) releases the
    # running thread's lock and marks it ended while it still runs.
    finished = threading.Lock()
    finished.acquire()

    def target():
        _local.owner = owner
        try:
            box["result"] = work(err)
        except BaseException as e:  # noqa: B902 — e.g. a ctypes ArgumentError
            box["exception"] = e
        finally:
            box["done"] = True
            finished.release()

    worker = threading.Thread(target=target, name="snapmig-call", daemon=True)
    worker.start()
    caller_exc = None
    while not box.get("done"):
        try:
            finished.acquire(timeout=_SLICE)
        except BaseException as e:  # noqa: B902 — KeyboardInterrupt, ...
            # Once: the request stays recorded until the call ends (an
            # early one included), and the call clears it as it returns.
            if caller_exc is None:
                caller_exc = e
                lib.snapmig_interrupt()

    if "exception" in box:
        raise box["exception"]
    result = box["result"]
    failed = result is None or result == -1
    failure = errors.error_from(err) if failed else None
    pending = caller_exc or (progress.exception if progress else None)
    if pending is not None:
        if failure is None:
            _note(pending, "snapmig: the operation had completed when the "
                  "interruption reached it")
            if discard is not None:
                discard(result)
        elif not isinstance(failure, errors.CLASSES["interrupted"]):
            _note(pending, "snapmig: the operation failed: %s" % failure)
        raise pending
    if failure is not None:
        raise failure
    return result


def interrupt():
    """Asks the running library call (in any thread) to stop."""
    lib.snapmig_interrupt()


__all__ = ["Progress", "run", "interrupt"]
