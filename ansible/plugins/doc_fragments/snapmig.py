# -*- coding: utf-8 -*-
# The options every snapmig.storage module documents alike: how it reaches
# the VM and which snapmig it runs (module_utils/snapmig.py's
# VM_ARGUMENT_SPEC).

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # connect, domain, snapmig_bin: every module.
    DOCUMENTATION = r'''
options:
  connect:
    description:
      - A libvirt connection URI (for example C(qemu:///system)); the VM is
        then the libvirt domain I(domain), reached through libvirt's API
        (C(--connect URI --domain NAME)), so that libvirt's live and
        persistent XML follow every change. Not with I(qmp).
      - Needs a snapmig built with libvirt (issue 14); a snapmig built
        without it fails the task with its own error.
    type: str
  domain:
    description:
      - The libvirt domain's name, with I(connect).
    type: str
  snapmig_bin:
    description:
      - The snapmig binary to run on the VM's host; by default C(snapmig)
        from C(PATH).
    type: path
notes:
  - The module runs on the VM's host, which must have snapmig.
  - "snapmig's errors fail the task with snapmig's stable I(code) (for
    example C(not-found), C(busy), C(in-use), C(no-space), C(timeout),
    C(disconnected)), the I(object) it concerns, I(msg), the I(cmd) that
    failed, its I(rc) and I(stderr); see snapmig-json(7)."
'''

    # qmp where the module needs a VM: exactly one of qmp and connect.
    VM = r'''
options:
  qmp:
    description:
      - The VM's QMP socket path (or C(HOST:PORT)).
      - Exactly one of I(qmp) and I(connect) is required.
    type: str
'''
