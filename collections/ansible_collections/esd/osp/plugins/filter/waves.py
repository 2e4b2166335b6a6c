# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: waves
author:
  - esd.osp developers (@esd-osp)
version_added: 0.1.0
short_description: Split rollout targets into a beta group and production waves
description:
  - Splits a list of target hosts (in inventory order) into a beta group and production waves, the same way the
    C(esd) runner plans a rollout, so a plain C(ansible-playbook) or AWX workflow can use the same batches.
  - The beta group is either given as hosts (an inventory group's members; only those that are targets count) or
    as a count or a percentage of the targets. A count or percentage is chosen deterministically and spread evenly
    over the targets in inventory order (for 10% of 100 hosts, every tenth host starting with the first), so
    the beta group samples every site or rack the inventory order groups together.
  - Wave sizes follow the rules of the play keyword C(serial) - a count or a percentage of the hosts left after the
    beta group, the last size repeating until every host has a wave; a percentage is rounded down, and is at
    least one host. No sizes means one wave with every remaining host.
options:
  _input:
    description: The target hosts, in inventory order.
    type: list
    elements: str
    required: true
  beta:
    description:
      - The beta group, as a list of hosts (for example C(groups['beta'])), a count (V(3)) or a percentage of the
        targets (V(10%)). Empty means no beta group.
    type: raw
  sizes:
    description: Wave sizes, each a count or a percentage (V([1, "50%", "100%"])).
    type: list
    elements: raw
    default: []
"""

EXAMPLES = r"""
- name: Plan the rollout like the esd runner does
  ansible.builtin.set_fact:
    rollout: "{{ groups['production'] | esd.osp.waves(beta='10%', sizes=['10%', '50%', '100%']) }}"
    # rollout.beta: [prod-001, prod-011, ...], rollout.waves: [[...], [...], [...]]
"""

RETURN = r"""
_value:
  description: The beta group and the waves.
  type: dict
  contains:
    beta:
      description: The beta hosts, in inventory order.
      type: list
      elements: str
    waves:
      description: The waves, each a list of hosts in inventory order.
      type: list
      elements: list
"""

import re

from ansible.errors import AnsibleFilterError

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_size(value, what="size"):
    """A size as ('count', n) or ('percent', p); raise ValueError when it is neither."""
    if isinstance(value, bool):
        raise ValueError("%s must be a count or a percentage such as 10%%, not %r" % (what, value))
    if isinstance(value, int):
        if value < 1:
            raise ValueError("%s must be at least 1, not %d" % (what, value))
        return ("count", value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_size(int(text), what)
        match = _PERCENT.match(text)
        if match:
            percent = float(match.group(1))
            if not 0 < percent <= 100:
                raise ValueError("%s must be a percentage above 0%% and at most 100%%, not %s" % (what, value))
            return ("percent", percent)
    raise ValueError("%s must be a count or a percentage such as 10%%, not %r" % (what, value))


def is_size(value):
    try:
        parse_size(value)
    except ValueError:
        return False
    return True


def resolve_size(size, total):
    """How many hosts a size means out of ``total`` (like serial: percentages round down, at least 1)."""
    kind, amount = size
    if kind == "count":
        return min(amount, total)
    return min(total, max(1, int(amount / 100.0 * total)))


def spread(hosts, count):
    """``count`` hosts spread evenly over ``hosts`` (inventory order kept): deterministic and representative."""
    hosts = list(hosts)
    count = min(count, len(hosts))
    if count <= 0:
        return []
    chosen = sorted({(index * len(hosts)) // count for index in range(count)})
    return [hosts[index] for index in chosen]


def split_waves(hosts, sizes):
    """``hosts`` cut into consecutive waves of the given sizes (the last size repeats, like serial)."""
    hosts = list(hosts)
    if not hosts:
        return []
    parsed = [parse_size(size, "wave size") for size in sizes] or [("percent", 100.0)]
    total = len(hosts)
    waves = []
    position = 0
    index = 0
    while position < total:
        size = parsed[min(index, len(parsed) - 1)]
        count = resolve_size(size, total)
        waves.append(hosts[position:position + count])
        position += count
        index += 1
    return waves


def choose_beta(hosts, beta):
    """The beta hosts among ``hosts``: members of a given list, or a count/percentage spread evenly."""
    hosts = list(hosts)
    if beta in (None, "", [], False):
        return []
    if isinstance(beta, (list, tuple, set, frozenset)):
        members = set(beta)
        return [host for host in hosts if host in members]
    return spread(hosts, resolve_size(parse_size(beta, "beta"), len(hosts)))


def plan_waves(hosts, beta=None, sizes=None):
    """{'beta': [...], 'waves': [[...], ...]} for ``hosts`` (see DOCUMENTATION)."""
    hosts = list(hosts)
    if len(set(hosts)) != len(hosts):
        seen = set()
        hosts = [host for host in hosts if not (host in seen or seen.add(host))]
    chosen = choose_beta(hosts, beta)
    members = set(chosen)
    rest = [host for host in hosts if host not in members]
    return {"beta": chosen, "waves": split_waves(rest, sizes or [])}


def waves(hosts, beta=None, sizes=None):
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("esd.osp.waves expects a list of hosts, got %s" % type(hosts).__name__)
    try:
        return plan_waves([str(host) for host in hosts], beta=beta, sizes=list(sizes or []))
    except ValueError as exc:
        raise AnsibleFilterError("esd.osp.waves: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"waves": waves}
