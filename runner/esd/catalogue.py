"""The workflow catalogue: the one place that maps each request type to its stages and gates.

Every ``spec.type`` of a change order has a :class:`RequestType` here: its category (ESD or OSP),
the sites involved and an ordered tuple of steps. A step is a :class:`Stage` (one playbook run
through ansible-runner), a :class:`Gate` (a decision by a person, or an automatic go/no-go), a
:class:`Notify` (a message to the stakeholders) or a :class:`Rollout` (a production stage split
into a beta group, a go/no-go gate and waves; the planner expands it).

Stage inputs are extravars. Their values are literals, :class:`Field` (a value taken from the
change order when the plan is made) or :class:`Ref` (a value an earlier stage reported through
``set_stats``, resolved when the stage starts). Nothing here runs anything; ``esd.plan`` turns a
change order plus this catalogue into a concrete plan and ``esd.engine`` executes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

ESD = "ESD"
OSP = "OSP"

SITE_BUILD = "build"
SITE_TEST = "test"
SITE_PRODUCTION = "production"
SITES = (SITE_BUILD, SITE_TEST, SITE_PRODUCTION)

# The name a test-site stage keeps its set_stats esd_test report under ({passed, backout_rehearsed, ...}).
TEST_OUTPUT = "test"

# Which change-order target each stage addresses: ``spec.targets.<role>``, defaulting to the group.
TARGET_DEFAULTS = {
    "build": "build_site",
    "test": "test_site",
    "depots": "depots",
    "repository": "repository",
    "hosts": None,  # production targets: the change order must name them
}

# The extra variable that carries a stage's resolved target pattern to its playbook (esd_hosts unless named here).
TARGET_VARIABLES = {"repository": "repository_hosts"}


@dataclasses.dataclass(frozen=True)
class Field:
    """A change-order value, by dotted path under ``spec`` (``software.name``)."""

    path: str
    default: Any = None

    def describe(self):
        return "<change order: spec.%s>" % self.path


@dataclasses.dataclass(frozen=True)
class Ref:
    """A value reported by an earlier stage (``set_stats``), by stage id and dotted path."""

    stage: str
    path: str

    def describe(self):
        return "<from stage %s: %s>" % (self.stage, self.path)


@dataclasses.dataclass(frozen=True)
class LedgerPath:
    """A directory inside the change order's ledger (build outputs stay with the change order)."""

    path: str

    def describe(self):
        return "<ledger: %s>" % self.path


@dataclasses.dataclass(frozen=True)
class TestEvidence:
    """The test record of the change order named in ``spec.backout.rehearsed_in`` (its test stage, for the
    digest this change order names), read from the ledger when the stage runs: what a production promotion
    outside a release rests on."""

    def describe(self):
        return "<test record of the change order in spec.backout.rehearsed_in>"


@dataclasses.dataclass(frozen=True)
class Actor:
    """The identity of the person running the stage (``--as`` / ``ESD_USER`` / OS user)."""

    def describe(self):
        return "<identity running the stage>"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One playbook run. ``outputs`` maps a ``set_stats`` key to the name the stage stores it under."""

    id: str
    title: str
    site: str
    playbook: str
    target: str | None = None            # key of TARGET_DEFAULTS; None: the playbook's own default
    inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    checks: tuple[str, ...] = ()         # names of result checks in esd.engine.STAGE_CHECKS
    when: str | None = None              # run only when this change-order field (under spec) is set

    kind = "stage"


@dataclasses.dataclass(frozen=True)
class Gate:
    """A decision the run waits for. ``excludes`` names who may not decide it (separation of duties)."""

    id: str
    title: str
    excludes: tuple[str, ...] = ()       # "requester", "builder"
    optional: bool = False               # only when the change order lists it in spec.approvals.required
    automatic: bool = False              # decided by the runner from the beta results unless manual

    kind = "gate"


@dataclasses.dataclass(frozen=True)
class Notify:
    """A message to the change order's stakeholders (spec.notifications)."""

    id: str
    title: str
    event: str

    kind = "notify"


@dataclasses.dataclass(frozen=True)
class Rollout:
    """A production stage run on the beta group, then a go/no-go gate, then the waves.

    The planner adds the distribution-log triage after the waves, the backout stage (``playbooks/backout.yml``:
    rolls back the endpoints that changed and failed with ``esd.osp.software`` state ``backout_state``, and
    redistributes to those where nothing changed) and the verdict. ``backout_state`` None: the change has no
    automatic rollback (endpoints that changed and failed are left to a person, see ``spec.backout.plan``).
    """

    stage: Stage
    backout_state: str | None = "rolled_back"
    backout_playbook: str | None = "backout.yml"   # None: no backout stage (image rollouts: triage and verdict only)

    kind = "rollout"


@dataclasses.dataclass(frozen=True)
class RequestType:
    id: str
    category: str
    title: str
    steps: tuple
    requires: tuple[str, ...] = ()       # change-order fields (under spec) this type needs

    @property
    def sites(self):
        seen = []
        for step in self.steps:
            stage = step.stage if isinstance(step, Rollout) else step
            if isinstance(stage, Stage) and stage.site not in seen:
                seen.append(stage.site)
        return tuple(site for site in SITES if site in seen)

    @property
    def uses_rollout(self):
        return any(isinstance(step, Rollout) for step in self.steps)

    @property
    def gate_ids(self):
        ids = []
        for step in self.steps:
            if isinstance(step, Gate):
                ids.append(step.id)
            elif isinstance(step, Rollout):
                ids.extend((GO_NO_GO.id, BACKOUT_REVIEW.id))
        return tuple(ids)


# --- gates ----------------------------------------------------------------------------------------

DEPLOYMENT_PLAN = Gate("deployment_plan", "Deployment-plan approval (the software distribution plan is confirmed)",
                       optional=True)
CHANGE_BOARD = Gate("change_board", "Change-board approval for production", excludes=("requester",))
TEST_SIGNOFF = Gate("test_signoff", "Test sign-off (test plan passed, backout rehearsed)", excludes=("builder",))
UAT_SIGNOFF = Gate("uat_signoff", "UAT sign-off (user acceptance test passed)", excludes=("builder",))
BUILD_SIGNOFF = Gate("build_signoff", "Build sign-off", excludes=("builder",))
GO_NO_GO = Gate("go_no_go", "Go/no-go after the beta group", automatic=True)
BACKOUT_REVIEW = Gate("backout_review", "Backout review: the triage of the distribution logs was reviewed before the "
                      "backout runs", optional=True)
CLIENT_ACCEPTANCE = Gate("client_acceptance", "Client acceptance before the change is made permanent", optional=True)

GATES = {gate.id: gate for gate in (DEPLOYMENT_PLAN, CHANGE_BOARD, TEST_SIGNOFF, UAT_SIGNOFF, BUILD_SIGNOFF,
                                    GO_NO_GO, BACKOUT_REVIEW, CLIENT_ACCEPTANCE)}



# --- stage building blocks --------------------------------------------------------------------------

SOFTWARE_IDENTITY = {
    "software_name": Field("software.name"),
    "software_version": Field("software.version"),
}
# Where production stages take the package from when the change order names a built artifact.
ARTIFACT_FROM_CHANGE_ORDER = {
    "software_src": Field("software.artifact"),
    "software_sha256": Field("software.sha256"),
}


def _build_package(stage_id="build", title="Build, scan and unit-test the package"):
    return Stage(
        stage_id, title, SITE_BUILD, "build_package.yml", target="build",
        inputs={
            "build_package_src": Field("software.source"),
            "build_package_dest": LedgerPath("artifacts"),
            # Only what the change order sets: otherwise the playbook's and inventory's defaults apply
            # (extravars would override inventory settings such as a site's ClamAV database).
            "build_package_scan": Field("build.scan"),
            "build_package_scan_database": Field("build.scan_database"),
            "build_package_unit_test": Field("build.unit_test"),
            "build_package_builder": Actor(),
        },
        outputs={"esd_artifact": "artifact"},
        checks=("artifact_reported", "artifact_matches_change_order"),
    )


def _test_package(source):
    return Stage(
        "test", "Install on the test hosts, health-check and rehearse the backout", SITE_TEST, "test_package.yml",
        target="test", inputs={**SOFTWARE_IDENTITY, **source}, outputs={"esd_test": TEST_OUTPUT},
        checks=("test_passed",),
    )


def _deploy(stage_id, title, playbook, source, **extra):
    return Stage(stage_id, title, SITE_PRODUCTION, playbook, target="hosts",
                 inputs={**SOFTWARE_IDENTITY, **source, **extra})


# The release flow. The test hosts install the build stage's artifact straight from the build, pinned to its
# sha256. After the change board the repository stages enter it into the repository (build channel, then the
# test channel it was tested in), promote it into the production channel with the passing test record as
# evidence, and distribute mirrors the signed production channel onto the depots. The
# production stages then pass no software_src: deploy.yml takes the package from each host's depot
# (depot_url/blobs/sha256/<sha256>), pinned to the sha256 of the signed index it verifies on the controller, and
# refuses unless that is the digest the build reported (and the change board approved).
BUILD_SOURCE = {
    "software_src": Ref("build", "artifact.path"),
    "software_sha256": Ref("build", "artifact.sha256"),
}
RELEASE_SOURCE = {
    "software_sha256": Ref("build", "artifact.sha256"),
}


def _retire_stage(stage_id, title, action):
    """retire.yml (retire, archive_retire) or delete_package.yml on the change order's hosts and depots."""
    if action == "delete_package":
        return Stage(stage_id, title, SITE_PRODUCTION, "delete_package.yml", target="hosts",
                     inputs={**SOFTWARE_IDENTITY, "esd_user": Actor()}, outputs={"esd_retirement": "retirement"})
    return Stage(stage_id, title, SITE_PRODUCTION, "retire.yml",
                 inputs={"retire_name": Field("software.name"), "retire_version": Field("software.version"),
                         "retire_action": action, "esd_user": Actor()},
                 outputs={"esd_retirement": "retirement"})


# promote.yml's variables (see the top of playbooks/promote.yml). Extra vars are templated by Ansible, so the
# evidence and the test record can name the change order (esd_change_order, which every stage gets).
PROMOTE_IDENTITY = {
    "promote_name": Field("software.name"),
    "promote_version": Field("software.version"),
    "promote_evidence": "{{ esd_change_order }}",
    "esd_user": Actor(),
}


def _promote(stage_id, title, site, channel, **inputs):
    return Stage(stage_id, title, site, "promote.yml", target="repository",
                 inputs={**PROMOTE_IDENTITY, "promote_channel": channel, **inputs},
                 outputs={"esd_promotion": "promotion"})


def _promote_to_test(src):
    """Add the artifact to the repository (build channel) and promote it to the test channel it was tested in."""
    return _promote("promote_test", "Enter the tested build into the repository: build channel, then test channel",
                    SITE_PRODUCTION, "test", promote_src=src)


# The passing test record the production promotion rests on, from the test stage's report.
RELEASE_TEST_RECORD = {
    "esd_tested_sha256": Ref("build", "artifact.sha256"),
    "esd_test_passed": Ref("test", "test.passed"),
    "promote_test_record": {
        "id": "{{ esd_change_order }}-test",
        "name": "{{ promote_name }}",
        "version": "{{ promote_version }}",
        "sha256": "{{ esd_tested_sha256 }}",
        "result": "{{ 'passed' if esd_test_passed | bool else 'failed' }}",
    },
}

PROMOTE = _promote("promote", "Promote the tested package into the production channel of the repository",
                   SITE_PRODUCTION, "production")
DISTRIBUTE = Stage("distribute", "Mirror the signed production channel onto the depot servers, checksum-validated",
                   SITE_PRODUCTION, "distribute.yml", target="depots",
                   inputs={"distribute_depots": Field("targets.depots", "depots"), "distribute_channel": "production"},
                   outputs={"esd_distribution": "distribution"})

RELEASE_REPOSITORY_STAGES: tuple = (_promote_to_test(Ref("build", "artifact.path")),
                                    dataclasses.replace(PROMOTE, inputs={**PROMOTE.inputs, **RELEASE_TEST_RECORD}),
                                    DISTRIBUTE)

ANNOUNCE_DEPLOYMENT = Notify("announce", "Notify stakeholders of the scheduled distribution", "deployment_scheduled")

_ESD_PRODUCTION = ("software.name", "software.version", "targets.hosts", "backout.plan")
# spec.software.artifact is optional: without it each host takes the package from its depot (depot_url), pinned to
# the signed production index, and spec.software.sha256 must be the digest that index lists.
_ESD_INSTALL = _ESD_PRODUCTION + ("software.sha256", "backout.rehearsed_in")

ESD_TYPES = (
    RequestType("prepare_package", ESD, "Prepare new software or patch (build a package)",
                (DEPLOYMENT_PLAN, _build_package(), dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("software.name", "software.version", "software.source")),
    RequestType("prepare_update", ESD, "Prepare an update package for installed software",
                (DEPLOYMENT_PLAN, _build_package(title="Build, scan and unit-test the update package"),
                 dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("software.name", "software.version", "software.source", "software.updates")),
    RequestType("prepare_media", ESD, "Prepare distribution media (ISO with packages, manifest, checksums)",
                (DEPLOYMENT_PLAN,
                 Stage("build_media", "Build the distribution media", SITE_BUILD, "build_media.yml", target="build",
                       inputs={"media_name": Field("media.name"), "media_packages": Field("media.packages"),
                               "media_builder": Actor()},
                       outputs={"esd_media": "media"}),
                 dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("media.name", "media.packages")),
    RequestType("test_package", ESD, "Test a package: install, verify, rehearse the backout on test hosts",
                (DEPLOYMENT_PLAN, _test_package(ARTIFACT_FROM_CHANGE_ORDER), TEST_SIGNOFF),
                requires=("software.name", "software.version", "software.artifact", "software.sha256",
                          "software.builder")),
    RequestType("test_media", ESD, "Test distribution media on test hosts",
                (DEPLOYMENT_PLAN,
                 Stage("test_media", "Install from the media on the test hosts and rehearse the backout", SITE_TEST,
                       "test_media.yml", target="test",
                       inputs={"media_src": Field("media.artifact"), "media_sha256": Field("media.sha256")},
                       outputs={"esd_test": TEST_OUTPUT}, checks=("test_passed",)),
                 TEST_SIGNOFF),
                requires=("media.name", "media.artifact", "media.sha256", "media.builder")),
    RequestType("add_to_production", ESD, "Promote a tested package into the production repository",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, _promote_to_test(Field("software.artifact")),
                 dataclasses.replace(PROMOTE, inputs={**PROMOTE.inputs, "promote_test_record": TestEvidence(),
                                                      "promote_evidence": Field("backout.rehearsed_in")})),
                requires=("software.name", "software.version", "software.artifact", "software.sha256",
                          "backout.plan", "backout.rehearsed_in")),
    RequestType("distribute", ESD, "Distribute a production package to the depot servers",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, DISTRIBUTE),
                requires=("software.name", "software.version", "software.sha256", "backout.plan")),
    RequestType("install", ESD, "Install software on target nodes: beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("install", "Install and activate", "deploy.yml", ARTIFACT_FROM_CHANGE_ORDER,
                                 software_state="active")),
                 CLIENT_ACCEPTANCE),
                requires=_ESD_INSTALL),
    RequestType("update", ESD, "Update installed software on target nodes: beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("update", "Install and activate the update (previous version kept as backup)",
                                 "deploy.yml", ARTIFACT_FROM_CHANGE_ORDER, software_state="active")),
                 CLIENT_ACCEPTANCE),
                requires=_ESD_INSTALL + ("software.updates",)),
    # Activate, commit, rollback_update and remove roll out like installs (beta, go/no-go, waves, triage,
    # backout). Only activate can be undone automatically (rolled_back re-activates the backup); a commit
    # removed the backup, a rollback removed the update and a removal the package, so their endpoints that
    # changed and failed go to a person (spec.backout.plan).
    RequestType("activate", ESD, "Activate an installed (staged) version: beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("activate", "Activate the installed version", "activate.yml", {}))),
                requires=_ESD_PRODUCTION),
    RequestType("commit", ESD, "Commit an active update (removes its backup): beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, CLIENT_ACCEPTANCE, ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("commit", "Commit the active version", "commit.yml", {}), backout_state=None)),
                requires=_ESD_PRODUCTION),
    RequestType("rollback_update", ESD, "Return nodes to the state before an uncommitted update: beta group, "
                "go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("rollback", "Re-activate the backup version", "rollback.yml", {}),
                         backout_state=None)),
                requires=_ESD_PRODUCTION),
    RequestType("remove", ESD, "Uninstall software from nodes: beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("remove", "Uninstall the software", "remove.yml", {}), backout_state=None)),
                requires=("software.name", "targets.hosts", "backout.plan")),
    RequestType("delete_package", ESD, "Delete a package from defined nodes or depots (not an uninstall)",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _retire_stage("delete_package", "Delete the package from the nodes' caches and the depots",
                               "delete_package")),
                requires=("software.name", "software.version", "targets.hosts", "backout.plan")),
    RequestType("retire", ESD, "Remove a package and its updates from the repository and all depots, no archive",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _retire_stage("retire", "Retire the package from the repository and depots", "retire")),
                requires=("software.name", "backout.plan")),
    RequestType("archive_retire", ESD, "Archive a package and its updates, then retire it",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _retire_stage("archive_retire", "Archive, then retire the package", "archive_retire")),
                requires=("software.name", "backout.plan")),
    RequestType("software_release", ESD,
                "End to end: build, test, approvals, promote, distribute, beta, go/no-go, waves, commit",
                (DEPLOYMENT_PLAN,
                 _build_package(),
                 _test_package(BUILD_SOURCE),
                 TEST_SIGNOFF,
                 CHANGE_BOARD,
                 *RELEASE_REPOSITORY_STAGES,
                 ANNOUNCE_DEPLOYMENT,
                 Rollout(_deploy("install", "Install and activate", "deploy.yml", RELEASE_SOURCE,
                                 software_state="active")),
                 CLIENT_ACCEPTANCE,
                 _deploy("commit", "Commit the new version (removes the backup)", "commit.yml", {})),
                requires=("software.name", "software.version", "software.source", "targets.hosts", "backout.plan")),
)

# --- OSP (images) ------------------------------------------------------------------------------------------

IMAGE_IDENTITY = {"image_family": Field("image.family"), "image_version": Field("image.version")}
IMAGE_FROM_CHANGE_ORDER = {"image_src": Field("image.artifact"), "image_sha256": Field("image.sha256")}
IMAGE_FROM_BUILD = {"image_src": Ref("build_image", "image.path"), "image_sha256": Ref("build_image", "image.sha256")}


def _image_stage(stage_id, title, site, playbook, target, when=None, **inputs):
    outputs = {"esd_image": "image"} if site == SITE_BUILD else {}
    return Stage(stage_id, title, site, playbook, target=target, inputs={**IMAGE_IDENTITY, **inputs},
                 outputs=outputs, when=when)


def _build_image(title="Build the OS image (rootfs archive, manifest, SBOM)", **inputs):
    return _image_stage("build_image", title, SITE_BUILD, "build_image.yml", "build",
                        image_source=Field("image.source"), image_base=Field("image.base"),
                        image_builder=Actor(), **inputs)


def _test_image(source):
    return Stage("test_image", "Automated install-and-test plan on the test hosts", SITE_TEST, "test_image.yml",
                 target="test", inputs={**IMAGE_IDENTITY, **source}, outputs={"esd_test": TEST_OUTPUT},
                 checks=("test_passed",))


_OSP_PRODUCTION = ("image.family", "image.version", "backout.plan")

OSP_TYPES = (
    RequestType("prepare_image", OSP, "Prepare a new OS image",
                (DEPLOYMENT_PLAN, _build_image(), dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("image.family", "image.version", "image.source")),
    RequestType("prepare_image_update", OSP, "Patch an existing image into a new image version",
                (DEPLOYMENT_PLAN, _build_image("Build the updated image from its base"),
                 dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("image.family", "image.version", "image.source", "image.base")),
    RequestType("prepare_image_media", OSP, "Prepare image distribution media",
                (DEPLOYMENT_PLAN,
                 _image_stage("build_image_media", "Build the image media", SITE_BUILD, "build_image_media.yml",
                              "build", **IMAGE_FROM_CHANGE_ORDER),
                 dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("image.family", "image.version", "image.artifact", "image.sha256")),
    RequestType("prepare_provisioning", OSP, "Prepare the provisioning mechanism (PXE/iPXE, preseed/kickstart, "
                "cloud-init)",
                (DEPLOYMENT_PLAN,
                 _image_stage("build_provisioning", "Build the provisioning mechanism", SITE_BUILD,
                              "build_provisioning.yml", "build", **IMAGE_FROM_CHANGE_ORDER),
                 dataclasses.replace(BUILD_SIGNOFF, optional=True)),
                requires=("image.family", "image.version")),
    RequestType("test_image", OSP, "Test an image: automated install-and-test plan",
                (DEPLOYMENT_PLAN, _test_image(IMAGE_FROM_CHANGE_ORDER), TEST_SIGNOFF),
                requires=("image.family", "image.version", "image.artifact", "image.sha256", "image.builder")),
    RequestType("test_image_media", OSP, "Test image media",
                (DEPLOYMENT_PLAN,
                 Stage("test_image_media", "Provision test hosts from the media", SITE_TEST, "test_image_media.yml",
                       target="test", inputs={**IMAGE_IDENTITY, **IMAGE_FROM_CHANGE_ORDER},
                       outputs={"esd_test": TEST_OUTPUT}, checks=("test_passed",)),
                 TEST_SIGNOFF),
                requires=("image.family", "image.version", "image.artifact", "image.sha256", "image.builder")),
    RequestType("add_image_to_production", OSP, "Promote a tested image into the production repository",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("promote_image", "Promote the image (at most two live per family)", SITE_PRODUCTION,
                              "promote_image.yml", "repository", **IMAGE_FROM_CHANGE_ORDER)),
                requires=_OSP_PRODUCTION + ("image.artifact", "image.sha256")),
    RequestType("distribute_image", OSP, "Distribute a production image to the depot servers",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("distribute_image", "Copy the image to the depots", SITE_PRODUCTION,
                              "distribute_image.yml", "depots", image_sha256=Field("image.sha256"))),
                requires=_OSP_PRODUCTION + ("image.sha256",)),
    RequestType("install_image", OSP, "Provision nodes from an image: beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_image_stage("provision", "Provision from the image", SITE_PRODUCTION, "provision.yml",
                                      "hosts", **IMAGE_FROM_CHANGE_ORDER), backout_state=None, backout_playbook=None),
                 CLIENT_ACCEPTANCE),
                requires=_OSP_PRODUCTION + ("image.artifact", "image.sha256", "targets.hosts")),
    RequestType("update_image", OSP, "Move nodes to a newer image version: beta group, go/no-go, waves",
                (DEPLOYMENT_PLAN, CHANGE_BOARD, ANNOUNCE_DEPLOYMENT,
                 Rollout(_image_stage("update_image", "Update nodes to the image version", SITE_PRODUCTION,
                                      "update_image.yml", "hosts", **IMAGE_FROM_CHANGE_ORDER), backout_state=None,
                         backout_playbook=None),
                 CLIENT_ACCEPTANCE),
                requires=_OSP_PRODUCTION + ("image.artifact", "image.sha256", "targets.hosts")),
    RequestType("rollback_image", OSP, "Return nodes to their previous image",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("rollback_image", "Roll nodes back to the previous image", SITE_PRODUCTION,
                              "rollback_image.yml", "hosts")),
                requires=_OSP_PRODUCTION + ("targets.hosts",)),
    RequestType("remove_image", OSP, "Remove an image from nodes",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("remove_image", "Remove the image from the nodes", SITE_PRODUCTION, "remove_image.yml",
                              "hosts")),
                requires=_OSP_PRODUCTION + ("targets.hosts",)),
    RequestType("delete_image", OSP, "Delete an image from defined nodes or depots",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("delete_image", "Delete the image", SITE_PRODUCTION, "delete_image.yml", "hosts")),
                requires=_OSP_PRODUCTION + ("targets.hosts",)),
    RequestType("retire_image", OSP, "Retire an image from the repository and all depots (refused while nodes "
                "run it unless forced)",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("retire_image", "Retire the image", SITE_PRODUCTION, "retire_image.yml", None,
                              retire_archive=False, retire_force=Field("image.force_retire", False))),
                requires=_OSP_PRODUCTION),
    RequestType("archive_retire_image", OSP, "Archive an image, then retire it",
                (DEPLOYMENT_PLAN, CHANGE_BOARD,
                 _image_stage("archive_retire_image", "Archive, then retire the image", SITE_PRODUCTION,
                              "retire_image.yml", None, retire_archive=True,
                              retire_force=Field("image.force_retire", False))),
                requires=_OSP_PRODUCTION),
    RequestType("image_release", OSP,
                "Image Create/Update fulfilment: validate request, build, install-and-test, validate, UAT, "
                "build sign-off, change board, move to PROD, retire the designated image",
                # Seed 000's order. The request is validated when it is registered (and again by the fulfilment
                # team when spec.approvals.required lists deployment_plan); the change board approves production
                # last, once the test stage rehearsed the backout (gates.rehearsal_problems), as in a release.
                (DEPLOYMENT_PLAN,
                 _build_image(),
                 _test_image(IMAGE_FROM_BUILD),
                 _image_stage("validate_image", "Validate the image (manifest, SBOM, digests)", SITE_TEST,
                              "validate_image.yml", "test", **IMAGE_FROM_BUILD),
                 Notify("announce_uat", "Announce UAT readiness", "uat_ready"),
                 UAT_SIGNOFF,
                 BUILD_SIGNOFF,
                 CHANGE_BOARD,
                 _image_stage("promote_image", "Move the build to the PROD repository", SITE_PRODUCTION,
                              "promote_image.yml", "repository", **IMAGE_FROM_BUILD),
                 _image_stage("retire_designated_image", "Remove the image designated for removal",
                              SITE_PRODUCTION, "retire_image.yml", None, image_version=Field("image.retire"),
                              retire_archive=True, retire_force=False, when="image.retire")),
                requires=("image.family", "image.version", "image.source", "backout.plan")),
)

REQUEST_TYPES = {request_type.id: request_type for request_type in ESD_TYPES + OSP_TYPES}


def get(type_id):
    """The request type for ``type_id``; KeyError if the catalogue does not know it."""
    return REQUEST_TYPES[type_id]


def rehearses_backout(step):
    """Whether a planned step (a dict of the frozen plan) is a test-site stage that reports a backout rehearsal
    (set_stats ``esd_test``). Test-site stages that rehearse nothing (image_release's validate_image) neither count
    for nor against the rehearsal that production approval needs."""
    return step.get("kind") == "stage" and step.get("site") == SITE_TEST and \
        TEST_OUTPUT in (step.get("outputs") or {}).values()


def optional_gates(request_type):
    gates = [step.id for step in request_type.steps if isinstance(step, Gate) and step.optional]
    if any(isinstance(step, Rollout) and step.backout_playbook for step in request_type.steps):
        gates.append(BACKOUT_REVIEW.id)
    return tuple(gates)
