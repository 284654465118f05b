"""The Python bindings (python/snapmig) against a real QEMU.

Run by tests/integration/test-python.sh against the module and library
that `make install PREFIX=$T/inst` installed, with:
  SNAPMIG_TEST_DIR      a directory of the shell test's own: every case
                        works in a directory of its own below it
  SNAPMIG_TEST_PIDFILE  each QEMU's PID is appended there, so that the
                        shell test kills a QEMU that pytest left behind
  SNAPMIG_TEST_SMQ      tests/tools/smq (the tests' QMP client)
  SNAPMIG_TEST_PYTHONDIR  where the module was installed (checked)
Each VM is a guest-less QEMU (-M none) with two QMP monitors: vm.qmp for
snapmig, mon.qmp for the test's own commands (QEMU serves one client per
monitor, and the library holds vm.qmp during a call), killed by PID.
Guest writes go through HMP's qemu-io (smq --hmp, which also reads QEMU's
log, where qemu-io prints its result, and fails on a failed write).
"""
import ctypes.util
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

from pathlib import Path

import pytest

import snapmig

TOP = Path(__file__).resolve().parents[2]
SMQ = os.environ.get("SNAPMIG_TEST_SMQ") or str(TOP / "tests/tools/smq")
PIDFILE = os.environ.get("SNAPMIG_TEST_PIDFILE")
WAIT_S = 60          # bound of every wait of the tests (QEMU, tools)
MiB = 1024 * 1024


def run(*args, **kw):
    """ARGS run to completion (bounded); its CompletedProcess, text."""
    return subprocess.run([str(a) for a in args], capture_output=True,
                          text=True, timeout=WAIT_S, **kw)


class Qemu:
    """A guest-less QEMU on DRIVES (-drive arguments) in DIR."""

    def __init__(self, d, drives):
        self.dir = d
        self.qmp = d / "vm.qmp"
        self.mon = d / "mon.qmp"
        self.log = d / "vm.log"
        args = ["qemu-system-x86_64", "-M", "none", "-nodefaults",
                "-display", "none",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp,
                "-qmp", "unix:%s,server=on,wait=off" % self.mon]
        for drive in drives:
            args += ["-drive", drive]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if PIDFILE:
            with open(PIDFILE, "a") as f:
                f.write("%d\n" % self.proc.pid)
        deadline = time.monotonic() + WAIT_S
        while not (self.qmp.exists() and self.mon.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail("QEMU did not start: %s" % self.log.read_text())
            time.sleep(0.02)

    def hmp(self, command_line):
        """Runs an HMP command on the test's monitor; fails the test when
        it (or the qemu-io command it runs) fails."""
        r = run(SMQ, "--hmp", "--log", self.log, self.mon, command_line)
        assert r.returncode == 0, "HMP %r failed: %s%s" % (
            command_line, r.stdout, r.stderr)
        return r.stdout

    def write(self, drive, pattern, offset, length):
        """Writes PATTERN through DRIVE's device, as the guest would."""
        self.hmp('qemu-io %s "write -P 0x%x %d %d"'
                 % (drive, pattern, offset, length))

    def quit(self):
        r = run(SMQ, self.mon, "quit")
        assert r.returncode == 0, "quit: %s" % r.stderr
        self.proc.wait(timeout=WAIT_S)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)


def offline_read(image, fmt, pattern, offset, length):
    """Whether IMAGE (and its chain) reads PATTERN at OFFSET, without QEMU;
    the qemu-io output when not."""
    r = run("qemu-io", "-r", "-f", fmt, "-c",
            "read -P 0x%x %d %d" % (pattern, offset, length), image)
    out = r.stdout + r.stderr
    good = (r.returncode == 0 and "read %d/%d bytes" % (length, length) in out
            and "verification failed" not in out)
    return good, out


@pytest.fixture
def workdir(request):
    base = os.environ.get("SNAPMIG_TEST_DIR")
    if not base:
        return request.getfixturevalue("tmp_path")
    d = Path(base) / request.node.name
    d.mkdir(parents=True)
    return d


class Setup:
    """Storage domains A (the VM's) and B (empty), a state directory, a
    2-disk VM on A: drive0 on top.qcow2 over base.qcow2 (32M, 0x11 in its
    first 2M; a relative backing name), drive1 on d1.raw (16M, 0x21 in its
    first 2M) — tests/integration/lib.sh's start_2disk_vm — and
    snapmig.VM on it."""

    def __init__(self, d, raw_mib=2):
        self.dir = d
        self.A, self.B, self.state = d / "A", d / "B", d / "state"
        for p in (self.A, self.B, self.state):
            p.mkdir()
        A = self.A
        for cmd in (
                ["qemu-img", "create", "-q", "-f", "qcow2", A / "base.qcow2",
                 "32M"],
                ["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 2M",
                 A / "base.qcow2"],
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                 "-b", "base.qcow2", A / "top.qcow2"],
                ["qemu-img", "create", "-q", "-f", "raw", A / "d1.raw", "16M"],
                ["qemu-io", "-f", "raw", "-c",
                 "write -P 0x21 0 %dM" % raw_mib, A / "d1.raw"]):
            r = run(*cmd)
            assert r.returncode == 0, "%s: %s" % (cmd, r.stderr)
        self.source_files = sorted(p.name for p in A.iterdir())
        self.qemu = Qemu(d, [
            "file=%s,if=none,id=drive0,format=qcow2" % (A / "top.qcow2"),
            "file=%s,if=none,id=drive1,format=raw" % (A / "d1.raw")])
        self.vm = snapmig.VM(self.qemu.qmp, state_dir=self.state,
                             timeout=WAIT_S)
        self.source_chains = {
            "drive0": [str(A / "top.qcow2"), str(A / "base.qcow2")],
            "drive1": [str(A / "d1.raw")]}

    def chains(self):
        return {d.name: [layer.file for layer in d.chain]
                for d in self.vm.disks()}

    def close(self):
        self.vm.close()
        self.qemu.kill()


@pytest.fixture
def setup(workdir):
    s = Setup(workdir)
    yield s
    s.close()


class Recorder:
    """A progress callback that keeps every call; DURING (optional) runs
    once, at the first call."""

    def __init__(self, during=None):
        self.calls = []
        self.during = during

    def __call__(self, kind, name, done, total, finished):
        self.calls.append((kind, name, done, total, finished))
        if self.during:
            during, self.during = self.during, None
            during()

    def check(self, disks):
        """The calls: some, done <= total, each item's last one finished,
        a mirror item per disk of DISKS."""
        assert self.calls, "progress was never called"
        last = {}
        for kind, name, done, total, finished in self.calls:
            assert kind in ("mirror", "copy"), kind
            assert done <= total, (kind, name, done, total)
            last[(kind, name)] = finished
        unfinished = [item for item, fin in last.items() if not fin]
        assert not unfinished, "last call not finished for %s" % unfinished
        assert {n for k, n in last if k == "mirror"} == set(disks)


def files_in(d):
    return sorted(p.name for p in d.iterdir())


# ---- the module ---------------------------------------------------------

def test_module_is_the_installed_one():
    header = (TOP / "include/snapmig.h").read_text()
    want = header.split('#define SM_VERSION "', 1)[1].split('"', 1)[0]
    assert snapmig.version() == want
    assert snapmig.__version__ == want
    pydir = os.environ.get("SNAPMIG_TEST_PYTHONDIR")
    if pydir:
        assert Path(snapmig.__file__).parent == Path(pydir) / "snapmig"
        from snapmig import _config
        assert snapmig._lib.lib._name == _config.LIBRARY
        assert Path(_config.LIBRARY).parent.parent == Path(pydir).parents[2]


def test_library_lookup(workdir):
    """Without the path make install recorded: $SNAPMIG_LIBRARY, else
    ctypes.util.find_library; none loading fails the import with a message
    naming what was tried and the fix."""
    copy = workdir / "py"
    shutil.copytree(Path(snapmig.__file__).parent, copy / "snapmig",
                    ignore=shutil.ignore_patterns("_config.py", "__pycache__"))
    show = "import snapmig; print(snapmig._lib.lib._name, snapmig.__version__)"
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    installed = snapmig._lib.lib._name
    r = run(sys.executable, "-c", show,
            env=dict(env, SNAPMIG_LIBRARY=installed))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [installed, snapmig.version()]

    r = run(sys.executable, "-c", show,
            env=dict(env, SNAPMIG_LIBRARY=str(workdir / "nope.so")))
    system = ctypes.util.find_library("snapmig")
    if system is None:
        assert r.returncode != 0
        assert "ImportError" in r.stderr
        assert str(workdir / "nope.so") in r.stderr
        assert "SNAPMIG_LIBRARY" in r.stderr and "make install" in r.stderr
    else:       # a libsnapmig on the linker's path is the last resort
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == system


def test_disks(setup):
    disks = setup.vm.disks()
    assert [d.name for d in disks] == ["drive0", "drive1"]
    d0, d1 = disks
    assert (d0.file, d0.format, d0.virtual_size) == (
        str(setup.A / "top.qcow2"), "qcow2", 32 * MiB)
    assert (d1.file, d1.format, d1.virtual_size) == (
        str(setup.A / "d1.raw"), "raw", 16 * MiB)
    assert [tuple(layer) for layer in d0.chain] == [
        (str(setup.A / "top.qcow2"), "qcow2"),
        (str(setup.A / "base.qcow2"), "qcow2")]
    assert [tuple(layer) for layer in d1.chain] == [
        (str(setup.A / "d1.raw"), "raw")]
    doc = setup.vm.disks_json()
    assert [d["file"] for d in doc["disks"]] == [d0.file, d1.file]


def test_log_handler(setup):
    """The library's debug messages reach a Python handler (the QMP
    conversation of a call among them), and stop when it is removed."""
    messages = []
    snapmig.set_log_handler(lambda domain, text: messages.append(text))
    try:
        setup.vm.disks()
    finally:
        snapmig.set_log_handler(None)
    assert any('"execute":"query-block"' in m for m in messages), messages
    n = len(messages)
    setup.vm.disks()
    assert len(messages) == n


# ---- a move -------------------------------------------------------------

def test_move_two_disks(setup):
    """create --wait and pivot through the API: the VM runs on B, the
    chains are kept, and every pattern the guest wrote before, during and
    after the move reads back from B's files once QEMU has quit."""
    q = setup.qemu
    expect = [("drive0", 0x11, 0, 2 * MiB), ("drive1", 0x21, 0, 2 * MiB)]

    def write(drive, pattern, offset):
        q.write(drive, pattern, offset, MiB)
        expect.append((drive, pattern, offset, MiB))

    write("drive0", 0x12, 4 * MiB)
    write("drive1", 0x22, 4 * MiB)

    def during_create():
        write("drive0", 0x13, 6 * MiB)
        write("drive1", 0x23, 6 * MiB)

    created = Recorder(during_create)
    setup.vm.create("move1", mirror_domain=setup.B, wait=True,
                    progress=created)
    assert len(expect) == 6, "the callback did not write during create"
    created.check(["drive0", "drive1"])
    # Each copy is of a lower layer into B (its file's name: the header
    # says the destination file; the library gives its base name today).
    copies = {Path(n).name for k, n, *_ in created.calls if k == "copy"}
    assert copies == {"top.qcow2", "base.qcow2", "d1.raw"}, copies
    assert copies <= set(files_in(setup.B))

    status = setup.vm.status("move1")
    assert status["snapshot"] == "move1"
    assert sorted(d["name"] for d in status["disks"]) == ["drive0", "drive1"]
    for d in status["disks"]:
        assert Path(d["mirror"]).parent == setup.B

    write("drive0", 0x14, 8 * MiB)
    write("drive1", 0x24, 8 * MiB)
    pivoted = Recorder(lambda: write("drive0", 0x15, 10 * MiB))
    result = setup.vm.pivot("move1", progress=pivoted)
    pivoted.check(["drive0", "drive1"])
    assert sorted(result.moved) == ["drive0", "drive1"]
    assert result.pause_us is not None and result.pause_us >= 0
    assert result.removed == []

    disks = setup.vm.disks()
    chains = {d.name: d.chain for d in disks}
    for name, chain in chains.items():
        for layer in chain:
            assert Path(layer.file).parent == setup.B, (name, layer)
    assert len(chains["drive0"]) == 3      # new top, top.qcow2, base.qcow2
    assert len(chains["drive1"]) == 2      # new top, d1.raw
    assert [Path(lay.file).name for lay in chains["drive0"][1:]] == [
        "top.qcow2", "base.qcow2"]
    assert chains["drive1"][1] == (str(setup.B / "d1.raw"), "raw")
    # The source is left in A as it was, with the new tops of the move.
    assert set(setup.source_files) <= set(files_in(setup.A))

    write("drive0", 0x16, 12 * MiB)
    write("drive1", 0x26, 12 * MiB)

    clean, report = snapmig.validate([setup.B], vms=[setup.vm])
    assert clean, report
    assert report["summary"]["errors"] == 0

    setup.qemu.quit()
    tops = {name: chain[0] for name, chain in chains.items()}
    bad = []
    for drive, pattern, offset, length in expect:
        good, out = offline_read(tops[drive].file, tops[drive].format,
                                 pattern, offset, length)
        if not good:
            bad.append("%s 0x%x at %d: %s" % (drive, pattern, offset, out))
    assert not bad, "\n".join(bad)


def assert_aborted(s):
    """After an abort: every disk runs on its source chain in A under the
    snapshot's new top (kept as the active layer, as `snapmig abort`
    does), and no file is left in B."""
    for name, chain in s.chains().items():
        assert chain[1:] == s.source_chains[name], chain
        assert Path(chain[0]).parent == s.A, chain
    assert files_in(s.B) == []


def test_abort(setup):
    """create without waiting, wait() with progress, abort: the VM stays
    on its source chain, the files the move created in B are gone, and the
    guest's writes before and after read back in the VM."""
    q = setup.qemu
    q.write("drive0", 0x12, 4 * MiB, MiB)
    setup.vm.create("move1", mirror_domain=setup.B)
    waited = Recorder()
    setup.vm.wait("move1", progress=waited)
    waited.check(["drive0", "drive1"])
    assert files_in(setup.B) != []
    q.write("drive0", 0x13, 5 * MiB, MiB)
    setup.vm.abort("move1")
    assert_aborted(setup)
    q.write("drive1", 0x22, 5 * MiB, MiB)
    for drive, pattern, offset, length in [
            ("drive0", 0x11, 0, 2 * MiB), ("drive0", 0x12, 4 * MiB, MiB),
            ("drive0", 0x13, 5 * MiB, MiB), ("drive1", 0x21, 0, 2 * MiB),
            ("drive1", 0x22, 5 * MiB, MiB)]:
        q.hmp('qemu-io %s "read -P 0x%x %d %d"'
              % (drive, pattern, offset, length))
    with pytest.raises(snapmig.NotFoundError):
        setup.vm.pivot("move1")


def test_pivot_delete_source(setup):
    """pivot(delete_source=True) lists the source files it removed: the
    layers the VM ran on in A, now gone."""
    setup.vm.create("move1", mirror_domain=setup.B, wait=True)
    before = setup.chains()
    result = setup.vm.pivot("move1", delete_source=True)
    assert result.removed, result
    ran_on = {f for chain in before.values() for f in chain}
    assert set(result.removed) <= ran_on, (result.removed, ran_on)
    for f in result.removed:
        assert not Path(f).exists(), f
    for chain in setup.chains().values():
        assert all(Path(f).parent == setup.B for f in chain), chain


def test_create_diskspecs_and_xml(setup):
    """create with diskspecs (drive0 moved to B, drive1 left where it is),
    then the same kind of move to C as a <domainsnapshot> file: each time
    drive0 runs on the named new top and, after pivot, on the named mirror,
    with its whole chain in the mirror's domain; drive1 never moves."""
    A, B = setup.A, setup.B
    setup.vm.create("move2", wait=True, diskspecs=[
        "drive0,file=%s,mirror=%s" % (A / "top.move2.qcow2",
                                      B / "top.move2.qcow2"),
        "drive1,snapshot=no"])
    chains = setup.chains()
    assert chains["drive0"][0] == str(A / "top.move2.qcow2")
    assert chains["drive1"] == setup.source_chains["drive1"]
    setup.vm.pivot("move2")
    chains = setup.chains()
    assert chains["drive0"][0] == str(B / "top.move2.qcow2")
    assert all(Path(f).parent == B for f in chains["drive0"]), chains
    assert chains["drive1"] == setup.source_chains["drive1"]

    C = setup.dir / "C"
    C.mkdir()
    xml = setup.dir / "move3.xml"
    xml.write_text("""<domainsnapshot>
  <name>move3</name>
  <disks>
    <disk name='drive0' snapshot='external'>
      <source file='%s'/>
      <mirror file='%s'/>
    </disk>
    <disk name='drive1' snapshot='no'/>
  </disks>
</domainsnapshot>
""" % (B / "top.move3.qcow2", C / "top.move3.qcow2"))
    setup.vm.create(None, xml=xml, wait=True)
    assert setup.chains()["drive0"][0] == str(B / "top.move3.qcow2")
    setup.vm.pivot("move3")
    chains = setup.chains()
    assert chains["drive0"][0] == str(C / "top.move3.qcow2")
    assert all(Path(f).parent == C for f in chains["drive0"]), chains
    assert chains["drive1"] == setup.source_chains["drive1"]


def test_readme_example(setup, capsys):
    """python/README.md's example runs as printed (its paths made the
    test's) and moves the VM to B."""
    text = (TOP / "python/README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    for printed, here in (("/run/vm1.qmp", setup.qemu.qmp),
                          ("/var/lib/snapmig", setup.state),
                          ("/srv/B", setup.B)):
        assert printed in code
        code = code.replace(printed, str(here))
    exec(compile(code, "python/README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "drive0 qcow2 33554432" in out
    assert "guest paused" in out
    for chain in setup.chains().values():
        assert all(Path(f).parent == setup.B for f in chain), chain


# ---- interruptions --------------------------------------------------------

class Stop(Exception):
    pass


def test_progress_exception_rolls_back(setup):
    """An exception raised in a progress callback reaches the caller after
    the library rolled the create back; the next create works."""
    def stop(kind, name, done, total, finished):
        raise Stop("stop at %s %s" % (kind, name))

    with pytest.raises(Stop):
        setup.vm.create("move1", mirror_domain=setup.B, wait=True,
                        progress=stop)
    assert setup.chains() == setup.source_chains
    assert files_in(setup.B) == []
    assert files_in(setup.A) == setup.source_files
    # A call on the same VM from its callback would wait for the lock the
    # call holds: it raises instead, and that rolls the create back too.
    with pytest.raises(RuntimeError, match="progress callback"):
        setup.vm.create("move1", mirror_domain=setup.B, wait=True,
                        progress=lambda *a: setup.vm.status())
    assert setup.chains() == setup.source_chains
    assert files_in(setup.B) == []
    # The interruption ended with the call: a new one is not interrupted.
    setup.vm.create("move2", mirror_domain=setup.B, wait=True)
    assert files_in(setup.B) != []
    setup.vm.abort("move2")
    assert_aborted(setup)


def test_interrupt_from_callback(setup):
    """snapmig.interrupt() stops the running call: InterruptedError (code
    'interrupted'), the create rolled back."""
    with pytest.raises(snapmig.InterruptedError) as e:
        setup.vm.create("move1", mirror_domain=setup.B, wait=True,
                        progress=lambda *a: snapmig.interrupt())
    assert e.value.code == "interrupted"
    assert setup.chains() == setup.source_chains
    assert files_in(setup.B) == []
    assert files_in(setup.A) == setup.source_files


class InterruptSeen:
    """Stands for the bindings' view of the library, so that the test knows
    when the bindings have asked it to stop."""

    def __init__(self, lib):
        self._lib = lib
        self.seen = threading.Event()

    def snapmig_interrupt(self):
        self.seen.set()
        self._lib.snapmig_interrupt()

    def __getattr__(self, name):
        return getattr(self._lib, name)


def test_sigint_rolls_back(workdir, monkeypatch):
    """SIGINT (Ctrl-C) while create waits: KeyboardInterrupt once the
    library has rolled the create back.  The copy of d1.raw (16M of data)
    is held to 1 MiB/s, so the move is still running at the first progress
    call, which sends the signal and returns once the bindings asked the
    library to stop."""
    s = Setup(workdir, raw_mib=16)
    # Python's own SIGINT handler: a shell starts a background job (the
    # test) with SIGINT ignored, and Python then keeps it ignored.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        seen = InterruptSeen(snapmig._call.lib)
        monkeypatch.setattr(snapmig._call, "lib", seen)

        def ctrl_c(kind, name, done, total, finished):
            if not seen.seen.is_set():
                os.kill(os.getpid(), signal.SIGINT)
                assert seen.seen.wait(WAIT_S), "the bindings never interrupted"

        with pytest.raises(KeyboardInterrupt):
            s.vm.create("move1", mirror_domain=s.B, wait=True,
                        bandwidth=MiB, progress=ctrl_c)
        assert seen.seen.is_set()
        assert s.chains() == s.source_chains
        assert files_in(s.B) == []
        assert files_in(s.A) == s.source_files
    finally:
        signal.signal(signal.SIGINT, old)
        s.close()


# ---- validate -------------------------------------------------------------

def test_validate(workdir):
    """A domain of sound chains is clean; a warning (an absolute backing
    name) counts only with strict=True; an error (a missing backing file)
    makes it unclean and names the file."""
    dom = workdir / "D"
    dom.mkdir()
    for cmd in (["qemu-img", "create", "-q", "-f", "qcow2", dom / "b.qcow2",
                 "1M"],
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                 "-b", "b.qcow2", dom / "t.qcow2"]):
        assert run(*cmd).returncode == 0
    clean, report = snapmig.validate(dom)
    assert clean is True
    assert report["summary"]["errors"] == 0

    assert run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
               dom / "b.qcow2", dom / "abs.qcow2").returncode == 0
    clean, report = snapmig.validate([dom])
    assert clean is True
    assert report["summary"]["warnings"] >= 1
    clean, report = snapmig.validate([dom], strict=True)
    assert clean is False
    (dom / "abs.qcow2").unlink()

    assert run("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2",
               "-b", "gone.qcow2", dom / "orphan.qcow2", "1M").returncode == 0
    clean, report = snapmig.validate([dom])
    assert clean is False
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert errors, report["findings"]
    assert any(f["file"] == str(dom / "orphan.qcow2") for f in errors), errors


# ---- errors ---------------------------------------------------------------

def test_wrong_snapshot_name(setup):
    for call in (lambda: setup.vm.pivot("nosuch"),
                 lambda: setup.vm.abort("nosuch"),
                 lambda: setup.vm.wait("nosuch")):
        with pytest.raises(snapmig.NotFoundError) as e:
            call()
        assert isinstance(e.value, snapmig.Error)
        assert e.value.code == "not-found"
        assert "nosuch" in e.value.message
        assert e.value.object is None or "nosuch" in e.value.object
        again = pickle.loads(pickle.dumps(e.value))
        assert (type(again), again.code, again.message, again.object) == (
            type(e.value), e.value.code, e.value.message, e.value.object)
    assert setup.chains() == setup.source_chains


def test_wrong_disk_name(setup):
    with pytest.raises(snapmig.NotFoundError) as e:
        setup.vm.create("move1", diskspecs=[
            "nodisk,file=%s" % (setup.A / "n.qcow2")])
    assert "nodisk" in e.value.message
    assert "drive0" in e.value.message      # names the VM's disks
    assert files_in(setup.A) == setup.source_files


def test_no_vm(workdir):
    sock = workdir / "none.qmp"
    with snapmig.VM(sock, state_dir=workdir) as vm:
        with pytest.raises(snapmig.Error) as e:
            vm.disks()
    assert str(sock) in e.value.message
    assert e.value.code in snapmig.CLASSES
    assert type(e.value) is snapmig.CLASSES[e.value.code]


def test_missing_domain(workdir):
    with pytest.raises(snapmig.NotFoundError) as e:
        snapmig.validate([workdir / "nodir"])
    assert "mkdir -p %s" % (workdir / "nodir") in e.value.message


def test_python_side_checks(workdir):
    with pytest.raises(ValueError):
        snapmig.VM(workdir / "x.qmp", timeout=-1)
    vm = snapmig.VM(workdir / "x.qmp")
    with pytest.raises(ValueError):
        vm.create("m", mirror_domain=workdir, progress=print)
    vm.close()
    with pytest.raises(ValueError):
        vm.disks()
    with pytest.raises(snapmig.InvalidInputError) as e:
        snapmig.VM("")
    assert e.value.code == "invalid-input"

