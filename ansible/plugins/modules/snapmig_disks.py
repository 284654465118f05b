#!/usr/bin/python
# -*- coding: utf-8 -*-
# snapmig_disks: a running VM's disks and their backing chains as facts
# (snapmig disks --json).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapmig_disks
short_description: List a running QEMU VM's disks and backing chains
description:
  - Runs C(snapmig disks --json) and returns the VM's disks as the fact
    C(snapmig_disks) and as C(disks), with each disk's active image, the backing
    chain QEMU has open (checked against the image headers on disk) and the
    block jobs running on it.
  - Never changes anything; supports check mode.
version_added: "0.1.0"
author: snapmig developers
extends_documentation_fragment:
  - snapmig.storage.snapmig
  - snapmig.storage.snapmig.vm
options:
  timeout:
    description:
      - Give up when QEMU does not answer within this many seconds
        (C(--timeout); snapmig's default is 5).
    type: int
seealso:
  - module: snapmig.storage.snapmig_move
  - module: snapmig.storage.snapmig_validate
'''

EXAMPLES = r'''
- name: What does vm1 run on?
  snapmig.storage.snapmig_disks:
    qmp: /run/vm1.qmp

- name: Every file of drive0's chain
  ansible.builtin.debug:
    msg: "{{ snapmig_disks | selectattr('device', 'eq', 'drive0')
             | map(attribute='chain') | first | map(attribute='file') | list }}"

- name: Through libvirt (a snapmig built with libvirt)
  snapmig.storage.snapmig_disks:
    connect: qemu:///system
    domain: vm1
  register: vm1_disks
'''

RETURN = r'''
disks:
  description:
    - The VM's disks, as C(disks) in C(snapmig disks --json)
      (schemas/snapmig.schema.json, C($defs/disks)).
    - Each has C(device), C(qdev), C(inserted), C(node-name), C(format),
      C(file), C(virtual-size), C(read-only), C(chain) (active layer first;
      each layer C(file), C(format), C(node-name), C(virtual-size),
      C(backing-file)), C(jobs), C(chain-checked) and C(warnings).
  returned: success
  type: list
  elements: dict
  sample:
    - device: drive0
      qdev: null
      inserted: true
      node-name: "#block194"
      format: qcow2
      file: /sd1/vm1/top.qcow2
      virtual-size: 33554432
      read-only: false
      chain:
        - {file: /sd1/vm1/top.qcow2, format: qcow2, node-name: "#block194",
           virtual-size: 33554432, backing-file: base.qcow2}
        - {file: /sd1/vm1/base.qcow2, format: qcow2, node-name: "#block307",
           virtual-size: 33554432, backing-file: null}
      jobs: []
      chain-checked: true
      warnings: []
other_jobs:
  description: Block jobs that belong to no disk (C(other-jobs)).
  returned: success
  type: list
  elements: dict
ansible_facts:
  description: The facts this module sets.
  returned: success
  type: dict
  contains:
    snapmig_disks:
      description: The same list as I(disks).
      type: list
      elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.snapmig.storage.plugins.module_utils.snapmig import (
    Snapmig, SnapmigError, vm_argument_spec, VM_MUTUALLY_EXCLUSIVE,
    VM_REQUIRED_ONE_OF, VM_REQUIRED_TOGETHER)


def main():
    module = AnsibleModule(argument_spec=vm_argument_spec(),
                           mutually_exclusive=VM_MUTUALLY_EXCLUSIVE,
                           required_together=VM_REQUIRED_TOGETHER,
                           required_one_of=VM_REQUIRED_ONE_OF,
                           supports_check_mode=True)
    sm = Snapmig(module)
    args = sm.vm_args()
    if module.params['timeout'] is not None:
        args += ['--timeout', str(module.params['timeout'])]
    try:
        doc = sm.document('disks', args)
    except SnapmigError as e:
        sm.fail(e)
    module.exit_json(changed=False, disks=doc['disks'], other_jobs=doc['other-jobs'],
                     ansible_facts=dict(snapmig_disks=doc['disks']))


if __name__ == '__main__':
    main()
