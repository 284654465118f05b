# -*- coding: utf-8 -*-
# The one place where the snapmig.storage modules run snapmig(1): every call
# goes through --json and is read as snapmig-json(7) describes it (the JSON
# Schema schemas/snapmig.schema.json is the reference): a document command
# prints one document on stdout, or {"error": {...}}; a long command prints
# JSON lines ending in one result event, {"ok": false, "error": {...}} on
# failure.  An error becomes fail_json(msg=, code=, object=), so that a
# playbook can match on snapmig's stable code rather than on its message.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os


# How a module reaches the VM: a QMP socket today, or libvirt (issue 14),
# which needs a snapmig built with libvirt.  Every module takes these.
VM_ARGUMENT_SPEC = dict(
    qmp=dict(type='str'),
    connect=dict(type='str'),
    domain=dict(type='str'),
    snapmig_bin=dict(type='path'),
    timeout=dict(type='int'),
)
VM_MUTUALLY_EXCLUSIVE = [('qmp', 'connect'), ('qmp', 'domain')]
VM_REQUIRED_TOGETHER = [('connect', 'domain')]
VM_REQUIRED_ONE_OF = [('qmp', 'connect')]


def vm_argument_spec(**more):
    """The options every module takes, plus MORE."""
    spec = dict(VM_ARGUMENT_SPEC)
    spec.update(more)
    return spec


class SnapmigError(Exception):
    """snapmig failed: ERROR is its error object (code, message, object)."""

    def __init__(self, error, rc, cmd, stderr):
        Exception.__init__(self, error.get('message', 'snapmig failed'))
        self.error = error
        self.rc = rc
        self.cmd = cmd
        self.stderr = stderr


class Snapmig:
    """Runs snapmig for MODULE, whose params hold VM_ARGUMENT_SPEC's options."""

    def __init__(self, module):
        self.module = module
        p = module.params
        if p.get('snapmig_bin'):
            self.bin = p['snapmig_bin']
            if not os.access(self.bin, os.X_OK):
                module.fail_json(msg='snapmig_bin %s is not an executable file: give the '
                                     'path of the snapmig binary, or leave snapmig_bin '
                                     'out to use the one on PATH' % self.bin,
                                 code='not-found', object=self.bin)
        else:
            self.bin = module.get_bin_path('snapmig', required=True)

    def vm_args(self):
        """The options that name the VM: --qmp SOCK or --connect URI --domain NAME
        (none when the module was given neither: validate without a VM)."""
        p = self.module.params
        if p.get('connect'):
            return ['--connect', p['connect'], '--domain', p['domain']]
        if p.get('qmp'):
            return ['--qmp', p['qmp']]
        return []

    def _run(self, command, args):
        cmd = [self.bin, command, '--json'] + list(args)
        rc, out, err = self.module.run_command(cmd)
        return cmd, rc, out, err

    def document(self, command, args, report_rcs=(0,)):
        """Runs a document command (disks, status, validate, ...) and returns its
        document.  REPORT_RCS are the exit statuses that still carry the
        command's own document (validate: 1 when it found problems).  Raises
        SnapmigError for an error document."""
        cmd, rc, out, err = self._run(command, args)
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise SnapmigError(_unreadable('snapmig %s printed no JSON document' % command,
                                           rc, err), rc, cmd, err)
        if 'error' in doc and len(doc) == 1:
            raise SnapmigError(doc['error'], rc, cmd, err)
        if rc not in report_rcs:
            raise SnapmigError(_unreadable('snapmig %s exited %d' % (command, rc), rc, err),
                               rc, cmd, err)
        return doc

    def events(self, command, args):
        """Runs a long command (create, pivot, ...) and returns (events, result):
        every event line it printed and the last one, its result.  Raises
        SnapmigError when the result says ok: false, or there is none."""
        cmd, rc, out, err = self._run(command, args)
        events = []
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except ValueError:
                raise SnapmigError(_unreadable('snapmig %s printed a line that is not JSON: %s'
                                               % (command, line), rc, err), rc, cmd, err)
        result = events[-1] if events else None
        if not isinstance(result, dict) or result.get('event') != 'result':
            raise SnapmigError(_unreadable('snapmig %s ended without a result event' % command,
                                           rc, err), rc, cmd, err)
        if not result.get('ok'):
            raise SnapmigError(result.get('error') or {}, rc, cmd, err)
        return events, result

    def fail(self, e, **more):
        """Fails the task with snapmig's error E: msg, code and object as
        snapmig gave them, the command line, its exit status and stderr."""
        self.module.fail_json(msg=e.error.get('message', str(e)),
                              code=e.error.get('code', 'failed'),
                              object=e.error.get('object'),
                              rc=e.rc, cmd=e.cmd, stderr=e.stderr, **more)


def _unreadable(what, rc, stderr):
    """An error object for output that does not follow snapmig-json(7): an
    old snapmig without --json, or one that crashed."""
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else 'nothing on stderr'
    return dict(code='failed', object=None,
                message='%s (exit status %d; %s); is this snapmig new enough for --json '
                        '(snapmig-json(7))?' % (what, rc, tail))


def in_dir(path, directory):
    """True when PATH is a file inside DIRECTORY (both resolved)."""
    d = os.path.realpath(directory).rstrip('/') + '/'
    return os.path.realpath(path).startswith(d)
