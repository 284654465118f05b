"""snapmig: move the disks of a running QEMU VM between storage domains
without stopping it, from Python.

Bindings over libsnapmig (include/snapmig.h) with ctypes: the same
operations, plans, journal and state directory as the snapmig(1) commands,
so a move started here can be watched, pivoted or recovered with the
command and the other way round.

    import snapmig
    vm = snapmig.VM("/run/vm1.qmp")
    for disk in vm.disks():
        print(disk.name, [layer.file for layer in disk.chain])
    vm.create("move1", mirror_domain="/srv/B", wait=True,
              progress=lambda kind, name, done, total, finished:
                  print(kind, name, done, total, finished))
    result = vm.pivot("move1")
    clean, report = snapmig.validate(["/srv/B"], vms=[vm])

Failures raise snapmig.Error subclasses by code (NotFoundError, BusyError,
...).  Ctrl-C during a call stops the operation as SIGINT stops the
command (a create is rolled back) and raises KeyboardInterrupt once the
library has unwound; see python/README.md.
"""
import json
import os

from ctypes import byref, c_char_p, c_void_p

from . import _call
from ._lib import LOG_FN, VALIDATE_STRICT, decode_text, encode_path, lib, \
    take_string
from .errors import (CLASSES, Error, FailedError, InvalidInputError,
                     InvalidXmlError, IoError, NotFoundError, ExistsError,
                     ImageError, UnsafeError, QemuError, QemuProtocolError,
                     DisconnectedError, TimeoutError, UnsupportedError,
                     BusyError, InterruptedError, InUseError, NoSpaceError)
from .vm import VM, Disk, Layer, PivotResult

try:
    from ._config import VERSION as __version__
except ImportError:
    __version__ = decode_text(lib.snapmig_version())


def version():
    """The version of the library loaded at run time ("0.2.0")."""
    return decode_text(lib.snapmig_version())


def interrupt():
    """Asks the library call running in any thread to stop, as SIGINT stops
    the command: it rolls back and raises InterruptedError (a call that
    waits in the main thread raises KeyboardInterrupt on Ctrl-C itself)."""
    _call.interrupt()


def set_helper(path):
    """The snapmig binary the library runs for its copy worker (None: the
    default, $SNAPMIG_HELPER, else the one installed beside the library,
    else snapmig from PATH)."""
    lib.snapmig_set_helper(encode_path(path))


_log_handler = None


@LOG_FN
def _log_trampoline(domain, message, opaque):
    # One C callback for the process's life: the library may still call it
    # from a running call after the handler changed or was removed.
    handler = _log_handler
    if handler is not None:
        handler(decode_text(domain), decode_text(message))


def set_log_handler(handler):
    """Calls HANDLER(domain, message) with each debug message of the
    library (what SNAPMIG_DEBUG prints), from the thread of the call that
    logs; None: none.  A handler must not raise: an exception is reported
    as unraisable and ignored."""
    global _log_handler
    _log_handler = handler
    lib.snapmig_set_log_handler(_log_trampoline if handler else LOG_FN(),
                                None)


def validate(domains, vms=(), strict=False):
    """Checks the storage domains DOMAINS (directories; one path or a list)
    and, with VMS (snapmig.VM objects), which chains those VMs run on
    (`snapmig validate`).  STRICT: warnings count as problems.  Returns
    (clean, report): clean is True when the domains are consistent, report
    the document `snapmig validate --json` prints, as a dict."""
    if isinstance(domains, (str, bytes, os.PathLike)):
        domains = [domains]
    domains = [encode_path(d) for d in domains]
    if not domains:
        raise ValueError("validate needs at least one storage domain")
    vms = list(vms)
    for vm in vms:
        if not isinstance(vm, VM):
            raise TypeError("validate's vms are snapmig.VM objects, not %r"
                            % (vm,))
    c_domains = (c_char_p * (len(domains) + 1))(*domains, None)
    report = c_void_p()
    # Each VM's lock, in one order so that two validates cannot deadlock.
    locked = [vm._locked() for vm in sorted(set(vms), key=id)]
    for lock in locked:
        lock.acquire()
    try:
        c_vms = None
        if vms:
            c_vms = (c_void_p * (len(vms) + 1))(*[vm._h() for vm in vms],
                                                None)
        flags = VALIDATE_STRICT if strict else 0
        rc = _call.run(lambda err: lib.snapmig_validate(
            c_domains, c_vms, flags, byref(report), byref(err)))
    finally:
        for lock in reversed(locked):
            lock.release()
    return rc == 1, json.loads(take_string(report.value) or "null")


__all__ = ["VM", "Disk", "Layer", "PivotResult", "validate", "version",
           "interrupt", "set_helper", "set_log_handler", "Error",
           "FailedError", "InvalidInputError", "InvalidXmlError", "IoError",
           "NotFoundError", "ExistsError", "ImageError", "UnsafeError",
           "QemuError", "QemuProtocolError", "DisconnectedError",
           "UnsupportedError", "BusyError", "InUseError", "NoSpaceError",
           "CLASSES"]
# snapmig.TimeoutError and snapmig.InterruptedError are left out of
# __all__ so that `from snapmig import *` cannot hide the built-ins.
