"""snapmig.VM: a running QEMU VM reached through its QMP monitor socket."""
import json
import os
import threading

from collections import namedtuple
from ctypes import byref, c_void_p

from . import _call
from ._lib import (PIVOT_DELETE_SOURCE, decode_path, decode_text, encode_path,
                   encode_text, lib, take_string)
from .errors import error_from

Layer = namedtuple("Layer", "file format")
Layer.__doc__ = "One image of a disk's chain: its absolute file and format."

Disk = namedtuple("Disk", "name file format virtual_size chain")
Disk.__doc__ = """A disk of the VM (`snapmig disks`): NAME (drive id, or the
guest device's id), FILE and FORMAT of its active layer, VIRTUAL_SIZE in
bytes, CHAIN a list of Layer, top (the active layer) first."""

PivotResult = namedtuple("PivotResult", "pause_us moved removed")
PivotResult.__doc__ = """What a pivot did: PAUSE_US, how long the guest was
paused in microseconds (None when it was not); MOVED, the names of the
disks switched to their destination; REMOVED, the source files removed
(delete_source=True), absolute paths."""


def _check_uint(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s must be an int >= 0, not %r" % (name, value))
    return value


class VM:
    """A running QEMU VM reached through its QMP monitor QMP (a socket path,
    "unix:PATH", or HOST:PORT, as the command's --qmp).  STATE_DIR:
    snapmig's state directory (None: the command's default,
    /var/lib/snapmig for root, else $XDG_STATE_HOME/snapmig).  TIMEOUT:
    seconds that bound each wait for QEMU and for progress (0: replies are
    bounded by the library's default, waits for progress are not).

    Holds no connection: each call connects, works and disconnects, so that
    `snapmig status` can reach the VM between calls.  Calls on one VM are
    serialised by a lock; use one VM object per thread for parallel work.
    Close it with close() or a with block (the garbage collector does too).
    """

    def __init__(self, qmp, state_dir=None, timeout=0):
        self._handle = None
        self.qmp = os.fspath(qmp)
        self.state_dir = None if state_dir is None else os.fspath(state_dir)
        self.timeout = _check_uint("timeout", timeout)
        self._lock = threading.Lock()
        err = c_void_p()
        handle = lib.snapmig_vm_new(encode_path(qmp), encode_path(state_dir),
                                    timeout, byref(err))
        if not handle:
            raise error_from(err)
        self._handle = handle

    def close(self):
        """Frees the library's object (the VM itself is not touched)."""
        handle, self._handle = self._handle, None
        if handle:
            lib.snapmig_vm_free(handle)

    def __del__(self):
        try:
            self.close()
        except Exception:       # interpreter shutdown: the module is gone
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "snapmig.VM(%r, state_dir=%r, timeout=%r)" % (
            self.qmp, self.state_dir, self.timeout)

    def _h(self):
        if not self._handle:
            raise ValueError("snapmig.VM(%r) is closed" % self.qmp)
        return self._handle

    def _locked(self):
        """The VM's lock, refused to a progress callback of a call on this
        VM (it holds the lock while its callback runs: a deadlock)."""
        if _call.owner() is self:
            raise RuntimeError("snapmig.VM(%r): called from a progress "
                               "callback of a call on the same VM, which "
                               "holds it until it returns" % self.qmp)
        return self._lock

    def _run(self, work, progress=None, discard=None):
        """WORK(handle, err) through _call.run, holding the VM's lock."""
        with self._locked():
            h = self._h()
            return _call.run(lambda err: work(h, err), progress, owner=self,
                             discard=discard)

    # ---- disks ------------------------------------------------------------

    def _query_disks(self):
        return self._run(lambda h, err: lib.snapmig_disks_query(h, byref(err)),
                         discard=lib.snapmig_disks_free)

    def disks(self):
        """The VM's disks, a list of Disk, each with its chain."""
        d = self._query_disks()
        try:
            return [_disk(d, i) for i in range(lib.snapmig_disks_count(d))]
        finally:
            lib.snapmig_disks_free(d)

    def disks_json(self):
        """The document `snapmig disks --json` prints, as a dict."""
        d = self._query_disks()
        try:
            return json.loads(take_string(lib.snapmig_disks_json(d)))
        finally:
            lib.snapmig_disks_free(d)

    # ---- create, watch, finish, undo ------------------------------------

    def create(self, name, mirror_domain=None, diskspecs=(), xml=None,
               bandwidth=0, wait=False, progress=None):
        """Takes the mirrored snapshot NAME that starts a move (`snapmig
        create`): MIRROR_DOMAIN, a directory where every disk's chain is
        pre-created and its new top mirrored; DISKSPECS, strings as
        --diskspec takes ("vda,file=PATH,mirror=PATH"); XML, a
        <domainsnapshot> document (text, or a path-like object to read) in
        place of NAME (then None) and the specs; BANDWIDTH, the mirrors'
        speed in bytes per second (0: unlimited).  WAIT: return once every
        mirror is ready and every lower layer copied, calling
        PROGRESS(kind, name, done, total, finished) meanwhile.  On failure
        (an interruption included) the VM and every file are as before."""
        _check_uint("bandwidth", bandwidth)
        if isinstance(diskspecs, (str, bytes)):
            diskspecs = [diskspecs]
        if progress is not None and not wait:
            raise ValueError("progress is only reported with wait=True")
        if isinstance(xml, os.PathLike):
            with open(xml, encoding="utf-8") as f:
                xml = f.read()
        opts = lib.snapmig_create_options_new(encode_text(name))
        if not opts:
            raise MemoryError("snapmig_create_options_new")
        try:
            err = c_void_p()
            if mirror_domain is not None and \
               lib.snapmig_create_options_set_mirror_domain(
                   opts, encode_path(mirror_domain), byref(err)) < 0:
                raise error_from(err)
            for spec in diskspecs:
                if lib.snapmig_create_options_add_diskspec(
                        opts, os.fsencode(spec), byref(err)) < 0:
                    raise error_from(err)
            if xml is not None and lib.snapmig_create_options_set_xml(
                    opts, encode_text(xml), byref(err)) < 0:
                raise error_from(err)
            lib.snapmig_create_options_set_bandwidth(opts, bandwidth)
            lib.snapmig_create_options_set_wait(opts, bool(wait))
            bridge = _call.Progress(progress)
            self._run(lambda h, err: lib.snapmig_create(
                h, opts, bridge.cfunc, None, byref(err)), bridge)
        finally:
            lib.snapmig_create_options_free(opts)

    def status(self, snapshot=None):
        """The document `snapmig status --json [SNAPSHOT]` prints, as a dict
        (SNAPSHOT None: the current move)."""
        return json.loads(take_string(self._run(
            lambda h, err: lib.snapmig_status_json(
                h, encode_text(snapshot), byref(err)), discard=take_string)))

    def wait(self, snapshot, progress=None):
        """Waits until the move SNAPSHOT is ready (every mirror ready, every
        copy done), calling PROGRESS(kind, name, done, total, finished)."""
        bridge = _call.Progress(progress)
        self._run(lambda h, err: lib.snapmig_wait(
            h, encode_text(snapshot), bridge.cfunc, None, byref(err)), bridge)

    def pivot(self, snapshot, delete_source=False, progress=None):
        """Waits for the move SNAPSHOT to be ready (PROGRESS), then switches
        every disk to its destination (`snapmig pivot`); with DELETE_SOURCE
        removes the source files.  Returns a PivotResult."""
        bridge = _call.Progress(progress)
        flags = PIVOT_DELETE_SOURCE if delete_source else 0
        res = c_void_p()
        try:
            self._run(lambda h, err: lib.snapmig_pivot(
                h, encode_text(snapshot), flags, bridge.cfunc, None,
                byref(res), byref(err)), bridge)
            pause = lib.snapmig_pivot_result_pause_us(res)
            return PivotResult(
                None if pause < 0 else pause,
                _list(res, lib.snapmig_pivot_result_moved_count,
                      lib.snapmig_pivot_result_moved),
                _list(res, lib.snapmig_pivot_result_removed_count,
                      lib.snapmig_pivot_result_removed))
        finally:
            lib.snapmig_pivot_result_free(res)

    def abort(self, snapshot):
        """Cancels the move SNAPSHOT (`snapmig abort`): the VM stays on its
        source chain and the files snapmig created are removed."""
        self._run(lambda h, err: lib.snapmig_abort(
            h, encode_text(snapshot), byref(err)))


def _disk(d, i):
    chain = [Layer(decode_path(lib.snapmig_disk_layer_file(d, i, n)),
                   decode_text(lib.snapmig_disk_layer_format(d, i, n)))
             for n in range(lib.snapmig_disk_chain_length(d, i))]
    return Disk(decode_text(lib.snapmig_disk_name(d, i)),
                decode_path(lib.snapmig_disk_file(d, i)),
                decode_text(lib.snapmig_disk_format(d, i)),
                int(lib.snapmig_disk_virtual_size(d, i)), chain)


def _list(obj, count, item):
    return [decode_path(item(obj, i)) for i in range(count(obj))]
