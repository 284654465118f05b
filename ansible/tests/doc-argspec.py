# doc-argspec.py [--playbooks FILE.md]... MODULE...: for each module of
# snapmig.storage, "MODULE ok" when its documented options (ansible-doc
# --json, doc fragments merged) match its argument spec in name, type,
# required, default, elements and aliases, and every task of its EXAMPLES
# (and of the ```yaml blocks of each FILE.md) that calls a module of the
# collection gives only options that module takes; else what differs.
# Exits 1 when anything differs.  Run with the Python that runs Ansible,
# the collection on ANSIBLE_COLLECTIONS_PATH and PYTHONPATH
# (tests/integration/test-ansible.sh).  ansible-test's validate-modules does
# more, but needs the network to set itself up.
import importlib
import json
import re
import subprocess
import sys

import yaml
import ansible.module_utils.basic as basic

PREFIX = 'snapmig.storage.'


class Captured(Exception):
    pass


def spec_of(name):
    """The argument_spec module NAME gives AnsibleModule (its main() is run
    up to that call)."""
    seen = {}

    def fake(*a, **kw):
        seen.update(kw)
        raise Captured()
    basic.AnsibleModule = fake
    mod = importlib.import_module('ansible_collections.snapmig.storage.plugins.modules.' + name)
    mod.AnsibleModule = fake
    try:
        mod.main()
    except Captured:
        pass
    return seen['argument_spec']


def doc_diffs(name, doc, spec):
    opts = doc['options']
    diffs = []
    for o in sorted(set(opts) | set(spec)):
        if o not in opts:
            diffs.append('%s undocumented' % o)
        elif o not in spec:
            diffs.append('%s documented, not taken' % o)
        else:
            for k in ('type', 'required', 'default', 'elements', 'aliases'):
                d, s = opts[o].get(k), spec[o].get(k)
                if k == 'required':
                    d, s = bool(d), bool(s)
                if d != s:
                    diffs.append('%s: %s %r documented, %r taken' % (o, k, d, s))
    return diffs


def task_diffs(where, tasks, specs):
    """Options given to a module of the collection that it does not take."""
    diffs = []
    for task in tasks or []:
        for key, args in task.items():
            if not key.startswith(PREFIX) or not isinstance(args, dict):
                continue
            spec = specs.get(key[len(PREFIX):])
            if spec is None:
                diffs.append('%s: no module %s' % (where, key))
                continue
            names = set(spec)
            for o in spec.values():
                names |= set(o.get('aliases') or [])
            diffs += ['%s: %s takes no option %s' % (where, key, a)
                      for a in sorted(set(args) - names)]
    return diffs


def main(argv):
    books = []
    while argv[:1] == ['--playbooks']:
        books.append(argv[1])
        argv = argv[2:]
    specs = dict((name, spec_of(name)) for name in argv)
    bad = 0
    for name in argv:
        doc = json.loads(subprocess.check_output(
            ['ansible-doc', '--json', '-t', 'module', PREFIX + name]))[PREFIX + name]
        diffs = doc_diffs(name, doc['doc'], specs[name])
        diffs += task_diffs('EXAMPLES', yaml.safe_load(doc['examples']), specs)
        print('%s %s' % (name, 'ok' if not diffs else '; '.join(diffs)))
        bad += bool(diffs)
    for book in books:
        diffs = []
        for block in re.findall(r'```yaml\n(.*?)```', open(book).read(), re.S):
            for play in yaml.safe_load(block) or []:
                diffs += task_diffs(book, play.get('tasks', [play]), specs)
        print('%s %s' % (book, 'ok' if not diffs else '; '.join(diffs)))
        bad += bool(diffs)
    return 1 if bad else 0


sys.exit(main(sys.argv[1:]))
