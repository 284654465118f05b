"""snapmig.Error and one subclass per error code of the JSON contract.

A failed library call raises the subclass of its code (snapmig-json(7)):
`not-found` raises NotFoundError, `busy` BusyError, and so on; a code this
module does not know (a newer library) raises Error itself.  Every one has
`code` (the code's string), `message` (what failed and what to do, naming
the object) and `object` (the file, disk, snapshot or socket concerned, or
None).  Arguments Python can check by itself raise TypeError / ValueError.
"""
from ._lib import decode_path, decode_text, lib


class Error(Exception):
    """A libsnapmig failure: .code, .message, .object."""

    code = "failed"

    def __init__(self, message, code=None, object=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.object = object

    def __str__(self):
        return self.message

    def __reduce__(self):       # pickle (multiprocessing) keeps every field
        return (type(self), (self.message, self.code, self.object))

    def __repr__(self):
        return "%s(%r, code=%r, object=%r)" % (
            type(self).__name__, self.message, self.code, self.object)


def _subclass(name, code, doc):
    return type(name, (Error,), {"code": code, "__doc__": doc,
                                 "__module__": "snapmig"})


# code -> class.  TimeoutError and InterruptedError live in the snapmig
# namespace (as asyncio.TimeoutError does): write snapmig.TimeoutError.
_TABLE = [
    ("FailedError", "failed", "Anything not listed below."),
    ("InvalidInputError", "invalid-input", "Arguments or options."),
    ("InvalidXmlError", "invalid-xml", "Malformed or invalid XML."),
    ("IoError", "io", "A system call failed."),
    ("NotFoundError", "not-found", "A file, disk, snapshot or VM."),
    ("ExistsError", "exists", "A target exists."),
    ("ImageError", "image", "A malformed image header."),
    ("UnsafeError", "unsafe", "A chain escapes its domain."),
    ("QemuError", "qemu-error", "QEMU refused a command."),
    ("QemuProtocolError", "qemu-protocol", "A reply not understood."),
    ("DisconnectedError", "disconnected", "QEMU or the link is gone."),
    ("TimeoutError", "timeout", "A wait ran out of time."),
    ("UnsupportedError", "unsupported", "QEMU lacks what is needed."),
    ("BusyError", "busy", "Another snapmig or job holds the VM."),
    ("InterruptedError", "interrupted",
     "snapmig.interrupt() or a signal stopped the operation."),
    ("InUseError", "in-use", "Another process holds a file."),
    ("NoSpaceError", "no-space", "A storage domain has no room."),
]
CLASSES = {code: _subclass(name, code, doc) for name, code, doc in _TABLE}
globals().update({cls.__name__: cls for cls in CLASSES.values()})


def error_from(err_ptr):
    """The exception for the snapmig_error ERR_PTR (a c_void_p), which is
    freed."""
    if not err_ptr:
        return Error("libsnapmig failed without saying why")
    try:
        code = decode_text(lib.snapmig_error_code_name(err_ptr)) or "failed"
        message = decode_text(lib.snapmig_error_message(err_ptr)) or code
        obj = decode_path(lib.snapmig_error_object(err_ptr))
    finally:
        lib.snapmig_error_free(err_ptr)
    return CLASSES.get(code, Error)(message, code, obj)
