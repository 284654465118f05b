# A stdout callback for tests/integration/test-ansible.sh: every task's
# result per host as one JSON document at the end of the run, in
# ansible.posix.json's shape ({"plays":[{"play":{"name"},"tasks":[{"task":
# {"name"},"hosts":{HOST:RESULT}}]}]}); ansible-core has no JSON callback
# of its own.  Not part of the built collection (galaxy.yml build_ignore).
import json
from ansible.plugins.callback import CallbackBase
DOCUMENTATION = """
name: results_json
type: stdout
short_description: every task's result per host as one JSON document
description: [test-ansible.sh reads the playbook's results from it]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'results_json'

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display)
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({'play': {'name': play.get_name()}, 'tasks': []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.plays[-1]['tasks'].append({'task': {'name': task.get_name()}, 'hosts': {}})

    def _record(self, result, **flags):
        r = dict(result._result)
        r.update(flags)
        self.plays[-1]['tasks'][-1]['hosts'][result._host.get_name()] = r

    def v2_runner_on_ok(self, result, **kw):
        self._record(result)

    def v2_runner_on_failed(self, result, **kw):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result, **kw):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result, **kw):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        self._display.display(json.dumps({'plays': self.plays}, default=str, indent=1))
