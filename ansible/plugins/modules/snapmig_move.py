#!/usr/bin/python
# -*- coding: utf-8 -*-
# snapmig_move: moves a running VM's disks to another storage domain
# (snapmig create --mirror --mirror-domain, then pivot), idempotently.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapmig_move
short_description: Move a running QEMU VM's disks to another storage domain
description:
  - Moves every writable disk of a running VM (or the disks named in
    I(disks)) with its whole backing chain into the storage domain
    I(dest_domain), without stopping the VM, the way C(snapmig create
    --mirror --mirror-domain) followed by C(snapmig pivot) does it; see
    snapmig(1).
  - Idempotent. It first asks C(snapmig disks --json) where each disk's
    chain lies; disks whose every layer is already in I(dest_domain) are
    left alone, and when every disk is there the task reports
    C(changed=false) and runs nothing else. A move of I(snapshot) that an
    earlier run started but did not pivot (C(snapmig status)) is pivoted
    rather than started again.
  - In check mode it returns the plan of C(create --dry-run) (or of
    C(pivot --dry-run) for a move already started) in I(plan), with
    I(changed) as it would be, and changes nothing.
version_added: "0.1.0"
author: snapmig developers
extends_documentation_fragment:
  - snapmig.storage.snapmig
  - snapmig.storage.snapmig.vm
options:
  dest_domain:
    description:
      - The destination storage domain, a directory that exists; each
        disk's chain is pre-created there with the same relative names.
    type: path
    required: true
  disks:
    description:
      - Move only these disks (QMP device names or qdev ids); by default
        every writable disk. Read-only and empty drives are never moved (as
        with C(snapmig create --mirror-domain)); a name the VM does not have
        fails with code C(not-found).
    type: list
    elements: str
  snapshot:
    description:
      - The name of the snapshot the move is made of. Each disk's new top is
        named after it (C(top.qcow2) gets C(top.NAME.qcow2)).
      - Fixed by default, not derived from the time, so that a run that was
        interrupted between create and pivot is recognised by the next run
        and finished. The snapshot is deleted by the pivot, so the same name
        serves every move.
    type: str
    default: ansible-move
  state_dir:
    description:
      - snapmig's state directory (C(--state-dir)); snapmig's default is
        C(/var/lib/snapmig) for root.
    type: path
  bandwidth:
    description:
      - Limit each mirror to this many bytes per second (C(--bandwidth);
        suffixes K, M, G, T are powers of 1024).
    type: str
  delete_source:
    description:
      - After the pivot, remove the source chain files the VM no longer uses
        (C(pivot --delete-source)); they are returned in I(removed).
    type: bool
    default: false
  timeout:
    description:
      - Give up when the mirrors and copies are not done within this many
        seconds, or QEMU does not answer within it (C(--timeout) of create
        and pivot). By default snapmig waits for the mirrors as long as they
        take.
    type: int
notes:
  - A missing I(dest_domain) fails with code C(not-found), another move in
    flight with C(busy).
  - A failed create is rolled back by snapmig; a failed pivot leaves the
    move in flight, and the next run of the task pivots it.
seealso:
  - module: snapmig.storage.snapmig_disks
  - module: snapmig.storage.snapmig_validate
'''

EXAMPLES = r'''
- name: Move vm1's disks to /sd2
  snapmig.storage.snapmig_move:
    qmp: /run/vm1.qmp
    dest_domain: /sd2/vm1

- name: Move only drive0, at most 50 MiB/s, removing the old files
  snapmig.storage.snapmig_move:
    qmp: /run/vm1.qmp
    dest_domain: /sd2/vm1
    disks: [drive0]
    bandwidth: 50M
    delete_source: true
    timeout: 3600

- name: What would the move do?
  snapmig.storage.snapmig_move:
    qmp: /run/vm1.qmp
    dest_domain: /sd2/vm1
  check_mode: true
  register: plan

- name: A libvirt domain (a snapmig built with libvirt)
  snapmig.storage.snapmig_move:
    connect: qemu:///system
    domain: vm1
    dest_domain: /sd2/vm1
'''

RETURN = r'''
snapshot:
  description: The snapshot the move was made of.
  returned: always
  type: str
  sample: ansible-move
moved:
  description: The disks this run moved (or, in check mode, would move).
  returned: always
  type: list
  elements: str
  sample: [drive0, drive1]
already:
  description: The disks whose chains were already in I(dest_domain).
  returned: always
  type: list
  elements: str
resumed:
  description: True when the run pivoted a move an earlier run had started.
  returned: always
  type: bool
plan:
  description: The plan of C(create --dry-run) or C(pivot --dry-run).
  returned: in check mode, when something would change
  type: str
  sample: "create file /sd2/vm1/base.qcow2 (qcow2, 33554432 bytes)\n..."
disks:
  description: Each moved disk and the file it now runs on (pivot's disk events).
  returned: when disks were moved
  type: list
  elements: dict
  sample: [{disk: drive0, active: /sd2/vm1/top.ansible-move.qcow2}]
pause_ms:
  description: How long the guest was paused for the pivot, null when it was not.
  returned: when disks were moved
  type: int
removed:
  description: The source files removed (I(delete_source)).
  returned: when disks were moved
  type: list
  elements: str
code:
  description: snapmig's error code (snapmig-json(7)).
  returned: failure
  type: str
  sample: not-found
object:
  description: The file, disk, snapshot or socket the error concerns.
  returned: failure
  type: str
cmd:
  description: The snapmig command line that failed.
  returned: failure
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.snapmig.storage.plugins.module_utils.snapmig import (
    Snapmig, SnapmigError, in_dir, vm_argument_spec, VM_MUTUALLY_EXCLUSIVE,
    VM_REQUIRED_ONE_OF, VM_REQUIRED_TOGETHER)


def sort_disks(module, doc, dest):
    """(to_move, already): the names of the chosen disks whose chains are not
    all in DEST, and of those whose chains are.  Read-only and empty drives
    are not moved (create --mirror-domain skips them too)."""
    wanted = module.params['disks']
    to_move, already, seen = [], [], set()
    for d in doc['disks']:
        names = set(n for n in (d.get('device'), d.get('qdev')) if n)
        if wanted is not None and not names & set(wanted):
            continue
        seen |= names
        if not d.get('inserted') or d.get('read-only') or not d.get('chain'):
            continue
        name = d.get('device') or d.get('qdev')
        if all(in_dir(layer['file'], dest) for layer in d['chain']):
            already.append(name)
        else:
            to_move.append(name)
    missing = [n for n in (wanted or []) if n not in seen]
    if missing:
        module.fail_json(msg='disk %s not found in the VM (its disks: %s)'
                         % (missing[0], ', '.join(sorted(seen)) or 'none'),
                         code='not-found', object=missing[0])
    return to_move, already


def move_in_flight(module, status, name, dest):
    """True when STATUS (snapmig status --json) shows the move NAME into DEST
    started and not pivoted; fails when another move is in flight."""
    if not status.get('moving'):
        return False
    snap = status.get('snapshot')
    mirrors = [d['mirror'] for d in status.get('disks', []) if d.get('mirror')]
    if snap != name or not all(in_dir(m, dest) for m in mirrors):
        module.fail_json(msg="the VM is in the middle of another move (snapshot '%s', mirrors %s): "
                             "finish it with 'snapmig pivot %s' or undo it with "
                             "'snapmig abort %s', then run this task again"
                             % (snap, ', '.join(mirrors) or 'none', snap, snap),
                         code='busy', object=snap)
    return True


def main():
    module = AnsibleModule(
        argument_spec=vm_argument_spec(
            dest_domain=dict(type='path', required=True),
            disks=dict(type='list', elements='str'),
            snapshot=dict(type='str', default='ansible-move'),
            state_dir=dict(type='path'),
            bandwidth=dict(type='str'),
            delete_source=dict(type='bool', default=False),
        ),
        mutually_exclusive=VM_MUTUALLY_EXCLUSIVE,
        required_together=VM_REQUIRED_TOGETHER,
        required_one_of=VM_REQUIRED_ONE_OF,
        supports_check_mode=True)
    p = module.params
    sm = Snapmig(module)
    dest, name = p['dest_domain'], p['snapshot']
    vm = sm.vm_args()
    state = ['--state-dir', p['state_dir']] if p['state_dir'] else []
    timeout = ['--timeout', str(p['timeout'])] if p['timeout'] is not None else []
    try:
        disks = sm.document('disks', vm)
        to_move, already = sort_disks(module, disks, dest)
        # A move in flight runs its mirrors as block jobs.  Without any, status
        # is not asked: it creates the VM's state directory, and a run that
        # changes nothing (check mode, the second run) must write nothing.
        jobs = disks.get('other-jobs') or any(d.get('jobs') for d in disks['disks'])
        resumed = jobs and move_in_flight(module, sm.document('status', vm + state),
                                          name, dest)
    except SnapmigError as e:
        sm.fail(e)
    out = dict(snapshot=name, moved=to_move, already=already, resumed=bool(resumed))
    if not to_move and not resumed:
        module.exit_json(changed=False, **out)

    create = vm + state + timeout + ['--mirror', '--mirror-domain', dest, '--name', name]
    if p['disks'] is not None or already:
        for d in to_move:
            create += ['--diskspec', d]
    if p['bandwidth']:
        create += ['--bandwidth', p['bandwidth']]
    pivot = vm + state + timeout + [name]
    if p['delete_source']:
        pivot += ['--delete-source']

    try:
        if module.check_mode:
            events, _ = sm.events('pivot' if resumed else 'create',
                                  (pivot if resumed else create) + ['--dry-run'])
            plans = [e.get('text', '') for e in events if e.get('event') == 'plan']
            module.exit_json(changed=True, plan='\n'.join(plans), **out)
        if not resumed:
            sm.events('create', create)
        events, result = sm.events('pivot', pivot)
    except SnapmigError as e:
        sm.fail(e, **out)
    out['disks'] = [dict(disk=e['disk'], active=e['active'])
                    for e in events if e.get('event') == 'disk']
    module.exit_json(changed=True, pause_ms=result.get('pause-ms'),
                     removed=result.get('removed', []), **out)


if __name__ == '__main__':
    main()
