# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: distribution_log
type: aggregate
author:
  - esd.osp developers (@esd-osp)
version_added: 0.1.0
short_description: Write one JSON record per endpoint and step of a software distribution
description:
  - Writes the distribution log of a run - one JSON object per line, for every host and every task result - with the
    host, the stage and wave, the play and task, the outcome (V(ok), V(changed), V(failed), V(unreachable),
    V(skipped)), the failing M(esd.osp.software) phase, return code, message and the start and end times.
  - The log is the input of the distribution triage (the P(esd.osp.triage#filter) filter and the C(esd) runner),
    which tells the endpoints to redistribute to from those to roll back.
  - Works under C(ansible-playbook), AWX / Automation Controller and ansible-runner. Under ansible-runner (and so
    under AWX and the C(esd) runner) the log goes to the job's artifact directory unless O(log_dir) is set.
  - Output hidden with C(no_log) is never written.
requirements:
  - Enabled in the configuration, for example C(callbacks_enabled = esd.osp.distribution_log) in C(ansible.cfg) or
    E(ANSIBLE_CALLBACKS_ENABLED=esd.osp.distribution_log).
options:
  log_dir:
    description:
      - Directory the log is written to (created when missing); records are appended to O(file_name) in it.
      - Default - the ansible-runner artifact directory (E(AWX_ISOLATED_DATA_DIR)) when there is one, else
        C(distribution_logs) in the working directory.
    type: path
    env:
      - name: ESD_DISTRIBUTION_LOG_DIR
    ini:
      - section: callback_distribution_log
        key: log_dir
  file_name:
    description: Name of the log file.
    type: str
    default: distribution_log.jsonl
    env:
      - name: ESD_DISTRIBUTION_LOG_FILE
    ini:
      - section: callback_distribution_log
        key: file_name
  stage:
    description:
      - The distribution stage the records belong to (for example C(install_wave_2)).
      - Default - the extra variable C(esd_stage) when set, else the playbook's file name without extension.
    type: str
    env:
      - name: ESD_STAGE
    ini:
      - section: callback_distribution_log
        key: stage
  wave:
    description: The wave the records belong to; default - the extra variable C(esd_wave) when set, else none.
    type: str
    env:
      - name: ESD_WAVE
    ini:
      - section: callback_distribution_log
        key: wave
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = esd.osp.distribution_log
# [callback_distribution_log]
# log_dir = /var/log/esd/distribution

# one record (one line of distribution_log.jsonl):
# {"format": "esd.osp/distribution-log/v1", "host": "prod-017", "stage": "install_wave_2", "wave": "2",
#  "play": "Production site | active hello-agent 1.1.0", "task": "Software | apply | Bring hello-agent to active",
#  "action": "esd.osp.software", "outcome": "failed", "phase": "health_check", "rc": 3, "reverted": true,
#  "message": "Failed to activate hello-agent 1.1.0: health check exited 3; reverted to 1.0.0",
#  "start": "2026-12-12T22:14:03.120Z", "end": "2026-12-12T22:14:04.871Z", ...}
"""

import datetime
import json
import os
import uuid

from ansible.plugins.callback import CallbackBase

FORMAT = "esd.osp/distribution-log/v1"
MESSAGE_LIMIT = 1000
STREAM_LIMIT = 500
# Keys of an esd.osp.software result that tell where the endpoint stands afterwards.
SOFTWARE_KEYS = ("active", "backup", "committed")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value, limit):
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        value = json.dumps(value, default=str)
    value = str(value)
    return value if len(value) <= limit else value[:limit - 3] + "..."


def _tail(value, limit):
    value = _text(value, 1 << 20)
    if value is None:
        return None
    value = value.strip()
    return value if len(value) <= limit else "..." + value[-(limit - 3):]


class CallbackModule(CallbackBase):
    """Appends one JSON record per host and task result to the distribution log."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "esd.osp.distribution_log"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self._handle = None
        self._path = None
        self._run = "%s-%s" % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S"),
                               uuid.uuid4().hex[:8])
        self._started = {}
        self._playbook = None
        self._play = None
        self._stage = None
        self._wave = None
        self._change_order = os.environ.get("ESD_CHANGE_ORDER")

    # --- where and what ---------------------------------------------------------------------------

    def _directory(self):
        configured = self.get_option("log_dir")
        if configured:
            return configured
        artifacts = os.environ.get("AWX_ISOLATED_DATA_DIR")
        if artifacts:
            return artifacts
        return os.path.join(os.getcwd(), "distribution_logs")

    def _open(self):
        if self._handle is None:
            directory = self._directory()
            os.makedirs(directory, exist_ok=True)
            self._path = os.path.join(directory, self.get_option("file_name") or "distribution_log.jsonl")
            self._handle = open(self._path, "a", encoding="utf-8")
        return self._handle

    def _write(self, record):
        handle = self._open()
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        # Each line is complete on disk before the next task starts: a killed run leaves a readable log.
        handle.flush()

    # --- playbook and play context ----------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.splitext(os.path.basename(getattr(playbook, "_file_name", "") or "playbook"))[0]

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()
        extra = {}
        try:
            extra = play.get_variable_manager().extra_vars or {}
        except Exception:  # pylint: disable=broad-except
            extra = {}  # no variable manager (an unusual embedding): options and env still apply
        self._stage = self.get_option("stage") or extra.get("esd_stage") or self._playbook
        wave = self.get_option("wave") or extra.get("esd_wave")
        self._wave = str(wave) if wave not in (None, "") else None
        if not self._change_order and extra.get("esd_change_order"):
            self._change_order = str(extra.get("esd_change_order"))

    # --- results ----------------------------------------------------------------------------------

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = _now()

    def _record(self, result, outcome, ignored=False):
        task = result._task
        host = result._host.get_name()
        data = result._result if isinstance(result._result, dict) else {}
        hidden = bool(data.get("_ansible_no_log") or getattr(task, "no_log", False))
        record = {
            "format": FORMAT,
            "run": self._run,
            "change_order": self._change_order,
            "stage": self._stage,
            "wave": self._wave,
            "play": self._play,
            "host": host,
            "task": task.get_name(),
            "action": task.action,
            "outcome": outcome,
            "changed": bool(data.get("changed")),
            "phase": data.get("phase"),
            "rc": data.get("rc") if isinstance(data.get("rc"), int) else None,
            "reverted": data.get("reverted"),
            "ignored": bool(ignored),
            "message": None,
            "stderr": None,
            "start": self._started.pop((host, task._uuid), None),
            "end": _now(),
        }
        if outcome in ("failed", "unreachable"):
            if hidden:
                record["message"] = "the output has been hidden due to the fact that 'no_log: true' was specified"
            else:
                record["message"] = _text(data.get("msg") or data.get("message") or data.get("reason")
                                          or data.get("stderr"), MESSAGE_LIMIT)
                record["stderr"] = _tail(data.get("stderr"), STREAM_LIMIT)
        elif outcome == "skipped" and not hidden:
            record["message"] = _text(data.get("skip_reason") or data.get("skipped_reason"), MESSAGE_LIMIT)
        if not hidden and "active" in data and "committed" in data:
            record["software"] = dict((key, data.get(key)) for key in SOFTWARE_KEYS)
        if record["start"] is None:
            record["start"] = record["end"]
        self._write(record)

    def v2_runner_on_ok(self, result):
        self._record(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed", ignored=ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_async_failed(self, result):
        self._record(result, "failed")

    def v2_playbook_on_stats(self, stats):
        if self._handle is not None:
            self._handle.close()
            self._handle = None
