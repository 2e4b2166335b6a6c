# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.esd.osp.plugins.filter.waves import FilterModule, plan_waves, split_waves, spread

HOSTS = ["h%03d" % n for n in range(1, 101)]


def waves(*args, **kwargs):
    return FilterModule().filters()["waves"](*args, **kwargs)


def test_a_percentage_beta_group_is_spread_evenly_and_deterministically():
    result = waves(HOSTS, beta="10%")
    assert result["beta"] == ["h%03d" % n for n in range(1, 101, 10)]
    assert waves(HOSTS, beta="10%") == result
    assert waves(HOSTS, beta=3)["beta"] == ["h001", "h034", "h067"]


def test_a_beta_group_given_as_hosts_keeps_only_targets_in_inventory_order():
    result = waves(HOSTS[:5], beta=["h004", "h002", "other"])
    assert result == {"beta": ["h002", "h004"], "waves": [["h001", "h003", "h005"]]}


def test_wave_sizes_follow_serial():
    result = waves(HOSTS, beta="10%", sizes=["10%", "50%", "100%"])
    assert [len(wave) for wave in result["waves"]] == [9, 45, 36]       # of the 90 hosts left after the beta
    assert sum(result["waves"], []) == [h for h in HOSTS if h not in result["beta"]]
    # the last size repeats; counts and percentages mix; a percentage is at least one host
    assert [len(w) for w in split_waves(HOSTS[:10], [1, "30%"])] == [1, 3, 3, 3]
    assert [len(w) for w in split_waves(HOSTS[:3], ["1%"])] == [1, 1, 1]
    assert split_waves(HOSTS[:4], []) == [HOSTS[:4]]


def test_spread_never_picks_a_host_twice_and_caps_at_the_list():
    assert spread(HOSTS[:3], 5) == HOSTS[:3]
    assert len(set(spread(HOSTS, 33))) == 33
    assert plan_waves([], beta="10%") == {"beta": [], "waves": []}


@pytest.mark.parametrize("bad", ["0%", "150%", "ten", 0, -2, True])
def test_invalid_sizes_are_refused_with_the_value(bad):
    with pytest.raises(AnsibleFilterError, match="esd.osp.waves: .*must be"):
        waves(HOSTS, sizes=[bad])
