"""Loads libsnapmig and declares the C functions the bindings call.

The library is looked up, in this order, at:
  1. the path `make install` recorded in _config.py (LIBDIR/libsnapmig.so.0);
  2. $SNAPMIG_LIBRARY (a path to libsnapmig.so.0), for a module used from
     the source tree or against another build;
  3. ctypes.util.find_library("snapmig") (the linker's search path).
The first one that loads is used; when none does, importing snapmig fails
with an ImportError that lists what was tried and how to fix it.
"""
import ctypes
import ctypes.util
import os

from ctypes import (CFUNCTYPE, POINTER, c_bool, c_char_p, c_int, c_int64,
                    c_size_t, c_uint, c_uint64, c_void_p)

SONAME = "libsnapmig.so.0"

# snapmig_progress_fn and snapmig_log_fn (include/snapmig.h).
PROGRESS_FN = CFUNCTYPE(None, c_char_p, c_char_p, c_uint64, c_uint64, c_bool,
                        c_void_p)
LOG_FN = CFUNCTYPE(None, c_char_p, c_char_p, c_void_p)

_ERR = POINTER(c_void_p)        # snapmig_error **

# name: (restype, argtypes).  Opaque objects are c_void_p; a `char *` the
# caller frees is c_void_p too (take_string copies and frees it), a
# `const char *` that lives with its object is c_char_p (copied by ctypes).
_PROTOTYPES = {
    "snapmig_version": (c_char_p, []),
    "snapmig_error_code": (c_int, [c_void_p]),
    "snapmig_error_code_name": (c_char_p, [c_void_p]),
    "snapmig_error_message": (c_char_p, [c_void_p]),
    "snapmig_error_object": (c_char_p, [c_void_p]),
    "snapmig_error_free": (None, [c_void_p]),
    "snapmig_code_name": (c_char_p, [c_int]),
    "snapmig_set_log_handler": (None, [LOG_FN, c_void_p]),
    "snapmig_set_helper": (None, [c_char_p]),
    "snapmig_interrupt": (None, []),
    "snapmig_vm_new": (c_void_p, [c_char_p, c_char_p, c_int, _ERR]),
    "snapmig_vm_free": (None, [c_void_p]),
    "snapmig_disks_query": (c_void_p, [c_void_p, _ERR]),
    "snapmig_disks_free": (None, [c_void_p]),
    "snapmig_disks_count": (c_size_t, [c_void_p]),
    "snapmig_disk_name": (c_char_p, [c_void_p, c_size_t]),
    "snapmig_disk_file": (c_char_p, [c_void_p, c_size_t]),
    "snapmig_disk_format": (c_char_p, [c_void_p, c_size_t]),
    "snapmig_disk_virtual_size": (c_uint64, [c_void_p, c_size_t]),
    "snapmig_disk_chain_length": (c_size_t, [c_void_p, c_size_t]),
    "snapmig_disk_layer_file": (c_char_p, [c_void_p, c_size_t, c_size_t]),
    "snapmig_disk_layer_format": (c_char_p, [c_void_p, c_size_t, c_size_t]),
    "snapmig_disks_json": (c_void_p, [c_void_p]),
    "snapmig_create_options_new": (c_void_p, [c_char_p]),
    "snapmig_create_options_free": (None, [c_void_p]),
    "snapmig_create_options_set_mirror_domain":
        (c_int, [c_void_p, c_char_p, _ERR]),
    "snapmig_create_options_add_diskspec": (c_int, [c_void_p, c_char_p, _ERR]),
    "snapmig_create_options_set_xml": (c_int, [c_void_p, c_char_p, _ERR]),
    "snapmig_create_options_set_bandwidth": (None, [c_void_p, c_uint64]),
    "snapmig_create_options_set_wait": (None, [c_void_p, c_bool]),
    "snapmig_create": (c_int, [c_void_p, c_void_p, PROGRESS_FN, c_void_p,
                               _ERR]),
    "snapmig_status_json": (c_void_p, [c_void_p, c_char_p, _ERR]),
    "snapmig_wait": (c_int, [c_void_p, c_char_p, PROGRESS_FN, c_void_p,
                             _ERR]),
    "snapmig_pivot": (c_int, [c_void_p, c_char_p, c_uint, PROGRESS_FN,
                              c_void_p, POINTER(c_void_p), _ERR]),
    "snapmig_pivot_result_pause_us": (c_int64, [c_void_p]),
    "snapmig_pivot_result_moved_count": (c_size_t, [c_void_p]),
    "snapmig_pivot_result_moved": (c_char_p, [c_void_p, c_size_t]),
    "snapmig_pivot_result_removed_count": (c_size_t, [c_void_p]),
    "snapmig_pivot_result_removed": (c_char_p, [c_void_p, c_size_t]),
    "snapmig_pivot_result_free": (None, [c_void_p]),
    "snapmig_abort": (c_int, [c_void_p, c_char_p, _ERR]),
    "snapmig_validate": (c_int, [POINTER(c_char_p), POINTER(c_void_p), c_uint,
                                 POINTER(c_void_p), _ERR]),
}

# Flags of include/snapmig.h.
PIVOT_DELETE_SOURCE = 1 << 0
VALIDATE_STRICT = 1 << 0


def _candidates():
    """(path or name, where it came from), in the order they are tried."""
    try:
        from . import _config
    except ImportError:
        _config = None
    if _config is not None and getattr(_config, "LIBRARY", None):
        yield _config.LIBRARY, "the path recorded by make install"
    env = os.environ.get("SNAPMIG_LIBRARY")
    if env:
        yield env, "$SNAPMIG_LIBRARY"
    found = ctypes.util.find_library("snapmig")
    if found:
        yield found, "ctypes.util.find_library"


def _load():
    tried = []
    for path, origin in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s): %s" % (path, origin, e))
            continue
        missing = [n for n in _PROTOTYPES if not hasattr(lib, n)]
        if missing:
            tried.append("%s (%s): lacks %s; it is older than these bindings"
                         % (path, origin, ", ".join(missing)))
            continue
        return lib
    raise ImportError(
        "snapmig: cannot load libsnapmig (%s): %s; install it with "
        "`make install`, or set SNAPMIG_LIBRARY to the path of %s"
        % (SONAME, "; ".join(tried) or "not found on the linker's path",
           SONAME))


lib = _load()
for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _f = getattr(lib, _name)
    _f.restype = _restype
    _f.argtypes = _argtypes

# free() for the strings the library hands over (include/snapmig.h: "freed
# with free()"): the C library's, already loaded into the process.
_free = ctypes.CDLL(None).free
_free.restype = None
_free.argtypes = [c_void_p]


def take_string(ptr):
    """The text of a `char *` the library returned (caller frees), freed."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "surrogateescape")
    finally:
        _free(ptr)


def encode_path(path):
    """A str, bytes or os.PathLike as the bytes the C library takes."""
    return None if path is None else os.fsencode(path)


def encode_text(text):
    return None if text is None else text.encode("utf-8")


def decode_path(raw):
    return None if raw is None else os.fsdecode(raw)


def decode_text(raw):
    return None if raw is None else raw.decode("utf-8", "replace")
