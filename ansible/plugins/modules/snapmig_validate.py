#!/usr/bin/python
# -*- coding: utf-8 -*-
# snapmig_validate: checks storage domains (snapmig validate --json) and
# fails the task when they have problems.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapmig_validate
short_description: Check storage domains of qcow2 and raw images
description:
  - Runs C(snapmig validate --json) on the storage domains (directory trees
    of qcow2 and raw images) for broken headers, backing files that escape the
    domains, unsafe chains, leftovers. Never writes; supports check mode.
  - Fails the task when the report has problems (errors, or warnings with
    I(strict)), unless I(fail_on_problems=false); the report is returned
    either way.
  - With a VM (I(qmp), or I(connect) and I(domain)) the images it has open
    count as in use and leftovers are looked for.
version_added: "0.1.0"
author: snapmig developers
extends_documentation_fragment:
  - snapmig.storage.snapmig
options:
  storage_domains:
    description:
      - The storage domains (directories) to check.
    type: list
    elements: path
    required: true
    aliases: [dirs]
  qmp:
    description:
      - A running VM's QMP socket path (or C(HOST:PORT)) whose open images
        count as used. Optional; not with I(connect).
    type: str
  state_dir:
    description:
      - snapmig's state directory, where the snapshots and moves that keep
        images in use are recorded (C(--state-dir)).
    type: path
  strict:
    description:
      - Count warnings as problems (C(--strict)).
    type: bool
    default: false
  fail_on_problems:
    description:
      - Fail the task when the report has problems.
    type: bool
    default: true
  timeout:
    description:
      - Give up when the VM does not answer within this many seconds.
    type: int
seealso:
  - module: snapmig.storage.snapmig_move
'''

EXAMPLES = r'''
- name: Is /sd2 consistent now that vm1 runs on it?
  snapmig.storage.snapmig_validate:
    storage_domains: [/sd2]
    qmp: /run/vm1.qmp

- name: Report only, warnings count
  snapmig.storage.snapmig_validate:
    storage_domains: [/sd1, /sd2]
    strict: true
    fail_on_problems: false
  register: check

- name: Files no VM uses any more
  ansible.builtin.debug:
    msg: "{{ check.report.findings | selectattr('code', 'eq', 'leftover-unused')
             | map(attribute='file') | list }}"
'''

RETURN = r'''
clean:
  description: True when the report has no problems.
  returned: when snapmig produced a report
  type: bool
summary:
  description: Counts (C(images), C(chains), C(errors), C(warnings), C(infos),
    C(clean), C(strict), C(leftovers-checked)).
  returned: when snapmig produced a report
  type: dict
report:
  description:
    - The whole C(snapmig validate --json) document (C($defs/validate) of
      schemas/snapmig.schema.json), with C(domains), C(summary), C(findings)
      (C(severity), C(code), C(file), C(message), C(fix), C(vm), C(disk)),
      C(images), C(chains), C(vm-disks).
  returned: when snapmig produced a report
  type: dict
code:
  description: snapmig's error code (snapmig-json(7)).
  returned: failure of snapmig itself
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.snapmig.storage.plugins.module_utils.snapmig import (
    Snapmig, SnapmigError, vm_argument_spec, VM_MUTUALLY_EXCLUSIVE,
    VM_REQUIRED_TOGETHER)


def problems(report):
    """One line naming the first problems of REPORT, for the task's msg."""
    s = report['summary']
    bad = ('error', 'warning') if s.get('strict') else ('error',)
    first = ['%s: %s' % (f.get('file') or f.get('disk') or '-', f['message'])
             for f in report['findings'] if f['severity'] in bad][:3]
    return 'storage domains %s: %d errors, %d warnings%s: %s' % (
        ', '.join(report['domains']), s['errors'], s['warnings'],
        ' (strict)' if s.get('strict') else '', '; '.join(first))


def main():
    module = AnsibleModule(
        argument_spec=vm_argument_spec(
            storage_domains=dict(type='list', elements='path', required=True,
                                 aliases=['dirs']),
            state_dir=dict(type='path'),
            strict=dict(type='bool', default=False),
            fail_on_problems=dict(type='bool', default=True),
        ),
        mutually_exclusive=VM_MUTUALLY_EXCLUSIVE,
        required_together=VM_REQUIRED_TOGETHER,
        supports_check_mode=True)
    p = module.params
    sm = Snapmig(module)
    args = sm.vm_args()
    if p['state_dir']:
        args += ['--state-dir', p['state_dir']]
    if p['strict']:
        args += ['--strict']
    if p['timeout'] is not None:
        args += ['--timeout', str(p['timeout'])]
    try:
        # validate exits 1 for a report with problems: still its report
        report = sm.document('validate', args + list(p['storage_domains']),
                             report_rcs=(0, 1))
    except SnapmigError as e:
        sm.fail(e)
    out = dict(changed=False, clean=report['summary']['clean'],
               summary=report['summary'], report=report)
    if not out['clean'] and p['fail_on_problems']:
        module.fail_json(msg=problems(report), **out)
    module.exit_json(**out)


if __name__ == '__main__':
    main()
