#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: repository
short_description: Add, promote, delete, retire, archive and restore artifacts in an esd.osp repository
version_added: 0.1.0
description:
  - Manages a content-addressed repository on the repository host. Artifact bytes are stored once, read-only, under
    their sha256 (C(blobs/sha256/<hex>)); a name and version is bound to one sha256 for ever (the binding survives
    retirement), so a second artifact with the same name and version is refused.
  - Channels are the sites, in promotion order (by default C(build), C(test), C(production)). Promotion writes an entry
    into the next channel recording who promoted it, when, from which channel and on which evidence. It never reads or
    copies the bytes, so promoting a 2 GiB image costs what promoting a 2 KiB package costs.
  - "Rules: promotion goes one channel at a time unless O(override) gives a reason to skip (recorded in the entry); the
    last channel (production) needs a passing test record (O(test_report), or one stored by an earlier promotion of
    the same bytes); at most C(max_live_images) images of one family are live in production; an image that
    O(in_use) says nodes still run is not retired unless O(force)."
  - The production channel index is always signed (Ed25519, detached C(.sig)); other channels are signed when
    O(signing_key) is given. Depots and the controller verify that signature before trusting any digest.
  - Every change is appended to C(log/events.jsonl) in the repository.
author:
  - esd.osp developers (@esd-osp)
options:
  path:
    description: The repository directory on the managed host. Created by the first O(state=present).
    type: path
    required: true
  state:
    description:
      - V(present) adds the artifact O(src) (its bytes by sha256, its catalogue record) to the first channel.
      - V(promoted) enters O(name) O(version) into O(channel) from the channel before it (or O(from_channel)). With
        O(src), the artifact is added to the first channel first (as V(present) would), in the same call, so check
        mode predicts the promotion of an artifact that is not in the repository yet.
      - V(absent) deletes O(name) (all versions, or O(version)) from one O(channel); bytes and other channels stay.
      - V(retired) takes O(name) (all versions, or O(version)) and every update of it out of every channel and deletes
        its bytes, without an archive. With O(version), an update goes only when its reference (C(updates) in its
        manifest, for example C(payroll-agent>=3.0)) matches that version, compared in version order, and matches no
        other version of O(name) that stays; an update naming no version goes with the last version of O(name).
      - V(archived) writes a verifiable archive of the same set to O(archive_dir) first, reads it back, then retires.
      - V(retired) and V(archived) are resumable. They first mark the records C(retiring) (with the archive they go to),
        then write the archive, rewrite the channels, delete the blobs and last mark the records C(retired). A run
        stopped at any point is finished by running it again, which keeps the archive the stopped run wrote when it
        is there and intact. Until then, the records marked C(retiring) cannot be promoted.
      - V(restored) brings the packages of the archive O(src) back (verified first, see O(public_keys)) into the first
        channel.
      - V(signed) (re-)signs the channel indexes with O(signing_key), for example after a key rotation.
    type: str
    choices: [present, promoted, absent, retired, archived, restored, signed]
    default: present
  src:
    description:
      - For O(state=present), the artifact file on the managed host (an esd.osp package, an image or media file).
      - For O(state=promoted), optionally the same, added first (if it is not there yet), then promoted. Without
        O(kind) it must be an esd.osp package whose manifest names O(name) O(version).
      - For O(state=restored), the archive file written by O(state=archived).
    type: path
  name:
    description:
      - Package or image name. Read from the artifact's manifest for O(state=present) with an esd.osp package (and
        checked when both are given); required there for images and media without a manifest.
    type: str
  version:
    description: Version. Required for O(state=promoted); optional for O(state=absent), O(state=retired) and O(state=archived).
    type: str
  kind:
    description: The kind of artifact, for O(state=present) when it has no esd.osp manifest (otherwise checked against it).
    type: str
    choices: [package, image, media]
  family:
    description:
      - The image family, for images (the limit of live images applies per family). Defaults to the manifest's
        C(family), else the image name.
    type: str
  channel:
    description: The channel to promote into (O(state=promoted)) or delete from (O(state=absent)).
    type: str
  from_channel:
    description:
      - The channel to promote from. Defaults to the channel before O(channel); any other (earlier) channel skips a
        site and needs O(override).
    type: str
  evidence:
    description:
      - What the promotion rests on, recorded in the entry (for example the change order or test report id). For
        production it defaults to the id of the passing test record.
    type: str
  test_report:
    description:
      - A test report on the managed host proving that exactly this artifact passed its tests; needed (or
        O(test_record)) to promote into the last channel unless a passing record of the same bytes is already stored.
      - JSON (C(name), C(version), C(result), optional C(sha256), C(id), C(summary.failed)) or JUnit XML (counts on
        C(testsuite), identity in C(<property name="name|version|sha256">)).
    type: path
  test_record:
    description:
      - The same as O(test_report), given as a mapping (for example C({id, name, version, sha256, result})) instead of
        a file; stored in the repository as canonical JSON. Mutually exclusive with O(test_report).
    type: dict
  override:
    description: The reason for skipping a site; required when O(from_channel) is not the channel before O(channel). Recorded.
    type: str
  force:
    description: Retire an image even though O(in_use) lists nodes that still run it.
    type: bool
    default: false
  in_use:
    description:
      - Inventory hosts that still run the image (or images) being retired, as the inventory shows. When it is not
        empty, retiring an image is refused unless O(force).
    type: list
    elements: str
    default: []
  archive_dir:
    description: Where O(state=archived) writes the archive. Defaults to C(<path>/archives).
    type: path
  signing_key:
    description:
      - A keyring directory (its active key signs; see M(esd.osp.signing_key)) or an Ed25519 PEM private key on the
        managed host. Required for any change to the production channel. Needs the Python library C(cryptography).
    type: path
  signing_key_passphrase:
    description: Passphrase of the private key, if it is encrypted.
    type: str
  public_keys:
    description:
      - Trusted public keys (C(ed25519:<base64>)) to verify the archive's signature with, for O(state=restored).
        The keys of the O(signing_key) keyring (or the key of a PEM O(signing_key)) are trusted too.
      - When any key is trusted, an unsigned or wrongly signed archive is refused. A repository that signs its channel
        indexes (it has a signed channel, or O(signing_key) is given) restores only a signed archive, so it refuses to
        restore when no key is trusted.
      - Whatever the keys, an archive listing a file other than the blobs and test records (C(records/<name>/<version>/<sha256>.json)
        or C(.report)) that O(state=archived) writes is refused before anything is written.
    type: list
    elements: str
    default: []
  actor:
    description: Who does this, recorded in entries and the event log. Defaults to E(ESD_USER), else the login user.
    type: str
  channels:
    description: The channels in promotion order, used when the repository is created; it cannot be changed later.
    type: list
    elements: str
  max_live_images:
    description:
      - How many images of one family may be live in the last channel (default 2 when the repository is created).
      - Can be changed with any O(state) (under the repository lock, counted in C(changed) and RV(actions)); lowering it
        below the number of images of a family already live in the last channel is refused.
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Promotion checks that the blob exists and has the size the catalogue records (a damaged blob is refused, naming
    its sha256 and both sizes) but does not re-hash it; use M(esd.osp.repository_info) with
    O(esd.osp.repository_info#module:verify_blobs=true) for a full integrity check.
  - The production index and its C(.sig) are two files. A signed index is staged as C(channels/<channel>.json.pending),
    signed, then renamed into place; a run stopped in between is reported as an interrupted publication (not as
    tampering) by M(esd.osp.repository_info), depots and the P(esd.osp.channel_index#lookup) lookup, and
    O(state=signed) repairs it.
seealso:
  - module: esd.osp.repository_info
  - module: esd.osp.signing_key
  - module: esd.osp.depot_channel
"""

EXAMPLES = r"""
- name: Add a built package to the build channel
  esd.osp.repository:
    path: /srv/esd/repository
    src: /var/lib/esd/build/payroll-agent-2.4.1.esdpkg

- name: Promote it to the test site
  esd.osp.repository:
    path: /srv/esd/repository
    name: payroll-agent
    version: 2.4.1
    channel: test
    evidence: CO-2026-0042
    state: promoted

- name: Promote it to production on the evidence of its passing test report
  esd.osp.repository:
    path: /srv/esd/repository
    name: payroll-agent
    version: 2.4.1
    channel: production
    test_report: /var/lib/esd/reports/CO-2026-0042/test-report.json
    signing_key: /etc/esd/keys
    state: promoted

- name: Archive, then retire the old image family member (refused while nodes run it)
  esd.osp.repository:
    path: /srv/esd/repository
    name: debian12-base
    version: "2025.10"
    in_use: "{{ groups['production'] | select('in', image_users) | list }}"
    signing_key: /etc/esd/keys
    state: archived
"""

RETURN = r"""
actions:
  description: What the call did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["promote payroll-agent 2.4.1 from test to production", "store test record TR-17 (passed)"]
entry:
  description: The channel entry written (or that would be written) by O(state=promoted).
  returned: when state is promoted
  type: dict
  sample:
    name: payroll-agent
    version: 2.4.1
    kind: package
    sha256: 9f2c1e0d6a4b5c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e
    size: 20480
    path: blobs/sha256/9f2c1e0d6a4b5c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e
    promoted_by: alice
    promoted_at: "2026-03-02T10:00:00Z"
    from_channel: test
    evidence: TR-17
    override: null
    test_record: {id: TR-17, result: passed, record: records/payroll-agent/2.4.1/ab12.json}
sha256:
  description: The sha256 of the artifact added by O(state=present).
  returned: when state is present
  type: str
  sample: 9f2c1e0d6a4b5c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e
size:
  description: Its size in bytes.
  returned: when state is present
  type: int
  sample: 20480
retired:
  description: The name/version/sha256 of everything retired (the package and its updates) and the channels it left.
  returned: when state is retired or archived
  type: list
  elements: dict
  sample: [{name: payroll-agent, version: 2.4.0, sha256: 5d41..., kind: package, channels: [build, test, production]}]
deleted:
  description: The channel entries removed by O(state=absent).
  returned: when state is absent
  type: list
  elements: dict
  sample: [{name: payroll-agent, version: 2.4.0, sha256: 5d41...}]
archive:
  description: The archive written (path, sha256, size, signing key id) or read.
  returned: when state is archived or restored
  type: dict
  sample: {path: /srv/esd/repository/archives/payroll-agent-20260302T100000Z.esdarchive, sha256: 77aa..., size: 40960}
restored:
  description: What O(state=restored) brought back into the first channel.
  returned: when state is restored
  type: list
  elements: dict
  sample: [{name: payroll-agent, version: 2.4.0, sha256: 5d41...}]
key_id:
  description: The id of the key that signs the indexes, for O(state=signed).
  returned: when state is signed
  type: str
  sample: 3b6f0c9a1d2e4f50
error:
  description: The kind of failure, so a pipeline can tell a refused rule from a conflict or tampering.
  returned: failure
  type: str
  sample: RuleError
channels:
  description: For each channel, the versions of O(name) in it after the call.
  returned: when name is given
  type: dict
  sample: {build: ["2.4.1"], test: ["2.4.1"], production: ["2.4.1"]}
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.esd.osp.plugins.module_utils import _repository, _signing
from ansible_collections.esd.osp.plugins.module_utils._artifact import ArtifactError, read_manifest

VERBS = {"present": "add", "promoted": "promote", "absent": "delete", "retired": "retire",
         "archived": "archive and retire", "restored": "restore", "signed": "sign the channels of"}


def membership(repo, name):
    if not name or not repo.exists():
        return {}
    return dict((c, sorted(e["version"] for e in repo.load_channel(c)["entries"] if e["name"] == name))
                for c in repo.channels)


def simulate(before, state, result, channels):
    """The channel membership a check-mode run would leave, from the operation's plan."""
    after = dict((c, list(before.get(c, []))) for c in channels)
    if state == "present" and result.get("name"):
        after[result["channel"]] = sorted(set(after.get(result["channel"], [])) | {result["version"]})
    elif state == "promoted":
        after[result["channel"]] = sorted(set(after[result["channel"]]) | {result["version"]})
    elif state == "absent":
        gone = set(e["version"] for e in result["entries"])
        after[result["channel"]] = [v for v in after[result["channel"]] if v not in gone]
    elif state in ("retired", "archived"):
        gone = set((r["name"], r["version"]) for r in result["retired"])
        for channel in after:
            after[channel] = [v for v in after[channel] if (result.get("name"), v) not in gone]
    elif state == "restored":
        back = set(r["version"] for r in result["restored"] if r["name"] == result.get("name"))
        after[channels[0]] = sorted(set(after[channels[0]]) | back)
    return after


def render(membership_map):
    return "".join("%s: %s\n" % (c, ", ".join(v) or "-") for c, v in membership_map.items())


class RepositoryModule(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def signer(self):
        if not self.params["signing_key"]:
            return None
        if not _signing.HAS_CRYPTOGRAPHY:
            self.module.fail_json(msg=missing_required_lib("cryptography"), exception=_signing.CRYPTOGRAPHY_IMPORT_ERROR)
        return _signing.load_signer(self.params["signing_key"], self.params["signing_key_passphrase"])

    def trusted_keys(self):
        """The keys an archive to restore may be signed by: public_keys, and the keys of the signing_key keyring
        (retired ones too, for archives written before a rotation; the signer's own key is always trusted)."""
        keys = list(self.params["public_keys"])
        if self.params["signing_key"] and os.path.isdir(self.params["signing_key"]):
            keys += _signing.Keyring(self.params["signing_key"]).public_keys()
        return keys

    def add_before_promotion(self, repo, check):
        """state=promoted with src: add the artifact to the first channel first. Without kind, src must be an
        esd.osp package, read from its manifest, that is the name and version being promoted."""
        p = self.params
        kind = p["kind"]
        added = repo.add(p["src"], name=p["name"] if kind else None, version=p["version"] if kind else None, kind=kind,
                         family=p["family"], channels=p["channels"], max_live_images=p["max_live_images"], check=check)
        if (added["name"], added["version"]) != (p["name"], p["version"]):
            raise _repository.RepositoryError("cannot promote %s %s with src %s: it is %s %s" % (
                p["name"], p["version"], p["src"], added["name"], added["version"]))
        return added

    def run(self):
        p = self.params
        check = self.module.check_mode
        repo = _repository.Repository(p["path"], signer=self.signer(), actor=p["actor"])
        state = p["state"]
        name = p["name"]
        if state == "present" and not name:
            try:
                name = read_manifest(p["src"])["name"]
            except ArtifactError:
                name = None  # add() explains what is wrong with src
        elif state == "restored":
            name = (_repository.archive_scope(p["src"]) or {}).get("name")
        before = membership(repo, name)
        limit_before = repo.config.get("max_live_images") if repo.exists() else None
        configured = {"changed": False, "actions": []}
        added = None
        if state == "present":
            result = repo.add(p["src"], name=p["name"], version=p["version"], kind=p["kind"], family=p["family"],
                              channels=p["channels"], max_live_images=p["max_live_images"], check=check)
        else:
            if state == "promoted" and p["src"]:
                # in check mode the planned add stays in memory on repo, so the promotion below sees it
                added = self.add_before_promotion(repo, check)
            if p["channels"] is not None or p["max_live_images"] is not None:
                # under the repository lock, before the operation, which then applies the new limit
                configured = repo.configure(p["channels"], p["max_live_images"], check=check)
            if state == "promoted":
                result = repo.promote(name, p["version"], p["channel"], from_channel=p["from_channel"],
                                      evidence=p["evidence"], test_report=p["test_record"] or p["test_report"],
                                      override=p["override"], check=check)
                if added is not None:
                    result = dict(result, changed=added["changed"] or result["changed"],
                                  actions=added["actions"] + result["actions"])
            elif state == "absent":
                result = repo.delete(name, p["channel"], version=p["version"], check=check)
                result["deleted"] = [dict((k, e[k]) for k in ("name", "version", "sha256")) for e in result["entries"]]
            elif state in ("retired", "archived"):
                archive_dir = (p["archive_dir"] or repo.p("archives")) if state == "archived" else None
                result = repo.retire(name, version=p["version"], in_use=p["in_use"], force=p["force"],
                                     archive_dir=archive_dir, check=check)
                result["name"] = name
            elif state == "restored":
                result = repo.restore(p["src"], public_keys=self.trusted_keys(), check=check)
                result["name"] = name
            else:
                result = repo.sign(check=check)
        channels = result.get("all_channels") or (added or {}).get("all_channels") or repo.channels
        if not name:
            after = {}  # membership is per name; without one, check mode must not invent empty channels
        elif check:
            after = simulate(simulate(before, "present", added, channels) if added else before, state, result, channels)
        else:
            after = membership(repo, name)
        out = {"changed": configured["changed"] or result["changed"], "actions": configured["actions"] + result["actions"]}
        for key in ("entry", "sha256", "size", "retired", "deleted", "archive", "restored", "key_id"):
            if key in result:
                out[key] = result[key]
        if name:
            out["channels"] = after
        if self.module._diff:
            limits = ("", "")
            if p["max_live_images"] is not None:  # the call succeeded, so the limit is the one asked for
                limits = ("max_live_images: %s\n" % (limit_before if limit_before is not None else "-"),
                          "max_live_images: %d\n" % p["max_live_images"])
            out["diff"] = {"before": limits[0] + render(before), "after": limits[1] + render(after),
                           "before_header": "%s (%s)" % (p["path"], name or "channels"),
                           "after_header": "%s (%s)" % (p["path"], name or "channels")}
        return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="present",
                       choices=["present", "promoted", "absent", "retired", "archived", "restored", "signed"]),
            src=dict(type="path"),
            name=dict(type="str"),
            version=dict(type="str"),
            kind=dict(type="str", choices=["package", "image", "media"]),
            family=dict(type="str"),
            channel=dict(type="str"),
            from_channel=dict(type="str"),
            evidence=dict(type="str"),
            test_report=dict(type="path"),
            test_record=dict(type="dict"),
            override=dict(type="str"),
            force=dict(type="bool", default=False),
            in_use=dict(type="list", elements="str", default=[]),
            archive_dir=dict(type="path"),
            signing_key=dict(type="path"),
            signing_key_passphrase=dict(type="str", no_log=True),
            public_keys=dict(type="list", elements="str", default=[]),
            actor=dict(type="str"),
            channels=dict(type="list", elements="str"),
            max_live_images=dict(type="int"),
        ),
        required_if=[
            ("state", "present", ("src",)),
            ("state", "promoted", ("name", "version", "channel")),
            ("state", "absent", ("name", "channel")),
            ("state", "retired", ("name",)),
            ("state", "archived", ("name",)),
            ("state", "restored", ("src",)),
            ("state", "signed", ("signing_key",)),
        ],
        mutually_exclusive=[("test_report", "test_record")],
        supports_check_mode=True,
    )
    params = module.params
    what = " ".join(x for x in (params["name"], params["version"]) if x) or params["src"] or ""
    prefix = "Failed to %s %s%sin repository %s" % (VERBS[params["state"]], what, " " if what else "", params["path"])
    try:
        result = RepositoryModule(module).run()
    except (_repository.RepositoryError, _signing.SigningError, ArtifactError) as exc:
        module.fail_json(msg="%s: %s" % (prefix, exc), error=type(exc).__name__)
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (prefix, exc), error="OSError", exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
