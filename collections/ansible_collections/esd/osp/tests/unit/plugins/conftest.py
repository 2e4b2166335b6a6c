# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the plugin unit tests."""

from __future__ import annotations

import pytest

from ansible_collections.esd.osp.plugins.module_utils import _signing


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    """A keyring with one active Ed25519 signing key."""
    ring = _signing.Keyring(str(tmp_path_factory.mktemp("keys")))
    ring.apply("present", [], "keyadmin")
    return ring
