# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The callback under a real ansible-playbook run (three local hosts; one fails, one is unreachable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from ansible_collections.esd.osp.plugins.filter.triage import triage_records

PLAYBOOK = """
- name: Distribute
  hosts: all
  gather_facts: false
  tasks:
    - name: Step one
      ansible.builtin.command: "true"
    - name: Step two
      ansible.builtin.fail:
        msg: "Failed to activate demo 1.0: health check exited 3"
      when: inventory_hostname == 'h2'
    - name: Secret step
      ansible.builtin.command: "echo hunter2"
      no_log: true
      failed_when: true
      ignore_errors: true
"""


def test_one_record_per_host_and_task_into_the_log_directory(tmp_path):
    (tmp_path / "site.yml").write_text(textwrap.dedent(PLAYBOOK))
    unreachable = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9}
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {
        "hosts": {"h1": {}, "h2": {}, "h3": unreachable},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED="esd.osp.distribution_log",
               ESD_DISTRIBUTION_LOG_DIR=str(tmp_path / "logs"), ESD_STAGE="install_wave_2")
    env.pop("AWX_ISOLATED_DATA_DIR", None)
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                             str(tmp_path / "hosts.yml"), str(tmp_path / "site.yml"), "-e", "esd_wave=2"],
                            env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False)
    assert result.returncode == 4, result.stdout      # a failed and an unreachable host
    with open(tmp_path / "logs" / "distribution_log.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    seen = sorted((r["host"], r["task"], r["outcome"]) for r in records)
    assert seen == [("h1", "Secret step", "failed"), ("h1", "Step one", "changed"), ("h1", "Step two", "skipped"),
                    ("h2", "Step one", "changed"), ("h2", "Step two", "failed"), ("h3", "Step one", "unreachable")]
    assert {(r["stage"], r["wave"], r["format"]) for r in records} == {
        ("install_wave_2", "2", "esd.osp/distribution-log/v1")}
    assert all(r["start"] <= r["end"] for r in records)
    failed = next(r for r in records if r["outcome"] == "failed" and r["host"] == "h2")
    assert failed["message"] == "Failed to activate demo 1.0: health check exited 3"
    secret = next(r for r in records if r["task"] == "Secret step")
    assert secret["ignored"] and "hunter2" not in json.dumps(secret)
    assert "no_log" in secret["message"]
    unreachable = next(r for r in records if r["outcome"] == "unreachable")
    assert "port 9" in unreachable["message"]
    # The log is what the triage reads.
    result = triage_records(records)
    assert result["counts"] == {"success": 1, "redistribute": 1, "rollback": 1, "manual": 0}
