# gantry: runs one of gantry's native roles (run-buildset-registry, build-container-image,
# ...) inside the gantry process that started this ansible-playbook, over its local unix
# socket with the run's token. Sends the task's variables (templated here), gets back
# facts, changed and failure.
import json
import os
import socket

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# Ansible's own and magic variables: not the role's business, and not JSON.
SKIP = {
    "hostvars", "groups", "group_names", "vars", "omit", "environment",
    "playbook_dir", "inventory_dir", "inventory_file", "role_path", "role_name",
    "role_names", "play_hosts", "ansible_play_hosts", "ansible_play_batch",
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        role = self._task.args.get("role")
        variables = {}
        for k, v in (task_vars or {}).items():
            if k in SKIP or k.startswith("ansible_") or k.startswith("gantry_native_"):
                continue
            try:
                variables[k] = self._templar.template(v)
            except Exception:
                continue
        request = {
            "token": os.environ.get("GANTRY_NATIVE_TOKEN", ""),
            "role": role,
            "vars": variables,
        }
        payload = json.dumps(request, default=str).encode("utf-8") + b"\n"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(os.environ["GANTRY_NATIVE_SOCKET"])
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except (OSError, KeyError) as e:
            raise AnsibleActionFail("gantry native role %s: cannot reach gantry: %s" % (role, e))
        finally:
            s.close()
        reply = json.loads(b"".join(chunks).decode("utf-8"))
        if not reply.get("ok"):
            result["failed"] = True
            result["msg"] = reply.get("msg", "failed")
            return result
        result["changed"] = bool(reply.get("changed"))
        facts = reply.get("facts") or {}
        if facts:
            result["ansible_facts"] = facts
        return result
