# doc-argspec.py MODULE...: for each module of snapmig.storage, "MODULE ok"
# when its documented options (ansible-doc --json, doc fragments merged)
# match its argument spec in name, type, required, default, elements and
# aliases, else what differs; exits 1 when any differs.  Run with the
# Python that runs Ansible, the collection on ANSIBLE_COLLECTIONS_PATH and
# PYTHONPATH (tests/integration/test-ansible.sh).  ansible-test's
# validate-modules does more, but needs the network to set itself up.
import json, subprocess, sys, importlib
import ansible.module_utils.basic as basic

class Captured(Exception):
    pass

def spec_of(name):
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

bad = 0
for name in sys.argv[1:]:
    doc = json.loads(subprocess.check_output(
        ['ansible-doc', '--json', '-t', 'module', 'snapmig.storage.' + name]))
    opts = doc['snapmig.storage.' + name]['doc']['options']
    spec = spec_of(name)
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
    print('%s %s' % (name, 'ok' if not diffs else '; '.join(diffs)))
    bad += bool(diffs)
sys.exit(1 if bad else 0)
