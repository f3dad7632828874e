# gantry: zuul_return for real Ansible (written for gantry, not copied from Zuul), with
# the arguments Zuul's action plugin documents: data, secret_data, file and secret_file
# (JSON files the task's data is merged over), path (a result file to write instead of
# the build's). Without path it appends one JSON line {"data": ..., "secret_data": ...}
# to the build's result file (zuul.executor.result_data_file), which gantry merges in
# order; with path it merges into that file's {"data", "secret_data"} object, as Zuul.
import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def _merge(new, into):
    """Zuul's merge rules: mappings recursively, new values win, zuul.artifacts and
    zuul.warnings concatenated (new first)."""
    lists = {}
    for key in ("artifacts", "warnings"):
        a = (new.get("zuul") or {}).get(key) or []
        b = (into.get("zuul") or {}).get(key) or []
        lists[key] = (a if isinstance(a, list) else []) + (b if isinstance(b, list) else [])

    def rec(n, i):
        for k, v in n.items():
            if isinstance(v, dict) and isinstance(i.get(k), dict):
                rec(v, i[k])
            else:
                i[k] = v

    rec(new, into)
    for key, value in lists.items():
        if value:
            into.setdefault("zuul", {})[key] = value
    return into


def _mapping(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AnsibleActionFail("zuul_return %s must be a mapping" % what)
    return value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        parts = {}
        for key, file_key in (("data", "file"), ("secret_data", "secret_file")):
            base = {}
            if args.get(file_key):
                with open(args[file_key]) as f:
                    base = _mapping(json.load(f), "%s %s" % (file_key, args[file_key]))
            parts[key] = _merge(_mapping(args.get(key), key), base)
        for d in parts.values():
            for a in (d.get("zuul") or {}).get("artifacts") or []:
                if not (isinstance(a, dict) and isinstance(a.get("name"), str)
                        and isinstance(a.get("url"), str)):
                    raise AnsibleActionFail(
                        "zuul_return: an artifact needs a string name and url, found %s" % (a,))
        path = args.get("path")
        if path:
            old = {}
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                if text.strip():
                    old = json.loads(text)
            merged = {
                "data": _merge(parts["data"], old.get("data") or {}),
                "secret_data": _merge(parts["secret_data"], old.get("secret_data") or {}),
            }
            fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)))
            with os.fdopen(fd, "w") as f:
                json.dump(merged, f)
            os.rename(tmp_path, path)
            result["changed"] = False
            return result
        results = task_vars.get("zuul", {}).get("executor", {}).get("result_data_file")
        if not results:
            raise AnsibleActionFail("zuul_return: no result file (zuul.executor.result_data_file)")
        line = json.dumps(parts, default=str)
        fd = os.open(results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        result["changed"] = False
        return result
