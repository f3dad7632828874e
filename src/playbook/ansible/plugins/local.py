# Shipped by gantry (src/playbook/ansible/plugins/local.py) into the connection_plugins
# directory of every ansible-playbook run it starts.
#
# ansible-core's `local` connection, except that modules and commands run in the directory
# ansible-playbook was started in: the job's work directory, which is where Zuul's executor
# starts ansible-playbook (zuul/executor/server.py, AnsibleJob.runAnsible:
# `cwd=self.jobdir.work_root`) and what stands in for a Zuul node's home directory, where a
# relative path on a node resolves. ansible-core instead moves a local connection into the
# playbook's directory before each command (ActionBase._low_level_execute_command); this
# plugin ignores that, so a relative `dest`/`path`/`chdir` means the same under gantry's
# built-in interpreter and under real Ansible.
from __future__ import annotations

DOCUMENTATION = '''
    name: local
    short_description: execute on this machine, in the job's work directory
    description:
        - ansible-core's local connection; commands and modules run in the directory
          ansible-playbook was started in (the job's work directory).
    author: gantry
    extends_documentation_fragment:
        - connection_pipelining
'''

import importlib.util
import os

import ansible.plugins.connection as _connection_plugins

# This file shadows ansible-core's `local`, so load that one under a private name.
_spec = importlib.util.spec_from_file_location(
    "gantry_ansible_builtin_local",
    os.path.join(os.path.dirname(_connection_plugins.__file__), "local.py"),
)
_builtin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_builtin)


class Connection(_builtin.Connection):
    @property
    def cwd(self):
        return None

    @cwd.setter
    def cwd(self, value):
        pass
