# gantry: zuul_return for real Ansible (written for gantry, not copied from Zuul).
# Appends one JSON line {"data": ..., "secret_data": ...} to the build's result file
# (zuul.executor.result_data_file); gantry merges the lines in order, with Zuul's rules.
import json
import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        path = args.get("path") or task_vars.get("zuul", {}).get("executor", {}).get("result_data_file")
        if not path:
            raise AnsibleActionFail("zuul_return: no result file (zuul.executor.result_data_file)")
        data = args.get("data") or {}
        if args.get("file"):
            with open(args["file"]) as f:
                data = json.load(f)
        secret_data = args.get("secret_data") or {}
        if not isinstance(data, dict) or not isinstance(secret_data, dict):
            raise AnsibleActionFail("zuul_return: data and secret_data must be mappings")
        line = json.dumps({"data": data, "secret_data": secret_data}, default=str)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        result["changed"] = False
        return result
