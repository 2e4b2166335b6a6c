# -*- coding: utf-8 -*-
# Copyright: (c) 2026, esd.osp developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provisioning mechanism of an OS image: the files that install it automatically, and their validation.

How a machine gets the image (bare metal or a VM booted from the network):

1. PXE (``pxelinux.cfg/default``) or iPXE (``ipxe/<stem>.ipxe``) boots the Debian installer from the network with
   ``auto=true priority=critical`` and the URL of the preseed.
2. The preseed (``preseed/<stem>.cfg``) answers every installer question: locale, network, mirror, disk layout,
   no root password, an administrator without password login. Its ``late_command`` fetches
   ``scripts/apply-image.sh``, which downloads the image archive from the depot, checks its sha256, unpacks it over
   the new system (keeping what is specific to the machine: fstab, hostname, network configuration, crypttab) and
   seeds cloud-init's NoCloud data source with the user-data.
3. At first boot cloud-init (``cloud-init/user-data``) creates the administrator with its SSH keys, runs the
   image's first-boot script (machine-id, SSH host keys) and records the provisioning in /etc/esd/provisioned.json.
   VMs can take the same user-data from ``cloud-init/seed.iso`` (volume CIDATA, the NoCloud convention).

Everything is validated before it is handed over: the iPXE and PXE scripts by their grammar, the preseed with
``debconf-set-selections --checkonly`` and a check of the answers the automation needs, the shell script with
``sh -n``, and the user-data with ``cloud-init schema`` when cloud-init is installed, else against cloud-init's own
JSON schema (with the jsonschema library), else by a structural check. Which validator ran is reported.

Standard library only (PyYAML and jsonschema are used when given by the caller).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible_collections.esd.osp.plugins.module_utils._fileio import sha256_file

FORMAT = "esd.osp/provisioning/v1"
DEFAULT_NETBOOT = "http://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/netboot/debian-installer/amd64"
IPXE_COMMANDS = ("kernel", "initrd", "boot", "echo", "dhcp", "ifconf", "set", "chain", "imgargs", "isset", "goto",
                 "sleep", "prompt", "imgfree", "shell", "exit", "iseq", "menu", "item", "choose")
PXE_KEYWORDS = ("DEFAULT", "LABEL", "KERNEL", "LINUX", "APPEND", "INITRD", "PROMPT", "TIMEOUT", "MENU", "SAY",
                "ONTIMEOUT", "IPAPPEND", "SYSAPPEND")
PRESEED_TYPES = ("string", "boolean", "select", "multiselect", "note", "text", "password", "seen", "title", "error")
PRESEED_REQUIRED = ("debian-installer/locale", "netcfg/choose_interface", "mirror/http/hostname", "partman-auto/method",
                    "passwd/root-login", "preseed/late_command", "grub-installer/bootdev", "finish-install/reboot_in_progress")
# Top-level cloud-config keys the structural check accepts when no schema is at hand (a subset of cloud-init's).
CLOUD_CONFIG_KEYS = ("bootcmd", "chpasswd", "disable_root", "final_message", "groups", "hostname", "fqdn",
                     "manage_etc_hosts", "ntp", "package_update", "package_upgrade", "packages", "phone_home",
                     "preserve_hostname", "runcmd", "ssh_authorized_keys", "ssh_deletekeys", "ssh_pwauth", "timezone",
                     "users", "write_files", "locale")
SCHEMA_LOCATIONS = ("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json",)


class ProvisioningError(Exception):
    """The provisioning mechanism cannot be generated or is invalid."""


def canonical_json(data):
    return (json.dumps(data, sort_keys=True, indent=1, separators=(",", ": ")) + "\n").encode("utf-8")


def shell_quote(value):
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


# --- generation ------------------------------------------------------------------------------------

def kernel_args(settings):
    return ("auto=true priority=critical url=%s locale=%s keymap=%s hostname=%s domain=%s interface=auto "
            "esd.image=%s:%s" % (settings["preseed_url"], settings["locale"], settings["keyboard"],
                                 settings["hostname"], settings["domain"], settings["family"], settings["version"]))


def ipxe_script(settings):
    return "\n".join([
        "#!ipxe",
        "# esd.osp provisioning: install %s %s (image sha256 %s)" % (
            settings["family"], settings["version"], settings["image_sha256"]),
        "dhcp",
        "set base %s" % settings["netboot_url"],
        "kernel ${base}/linux initrd=initrd.gz %s" % kernel_args(settings),
        "initrd ${base}/initrd.gz",
        "boot",
        ""])


def pxe_config(settings):
    label = "esd-%s-%s" % (settings["family"], settings["version"])
    return "\n".join([
        "# esd.osp provisioning: PXE boot entry for %s %s" % (settings["family"], settings["version"]),
        "DEFAULT %s" % label,
        "PROMPT 0",
        "TIMEOUT 50",
        "LABEL %s" % label,
        "  MENU LABEL Install %s %s (automated)" % (settings["family"], settings["version"]),
        "  KERNEL debian-installer/amd64/linux",
        "  INITRD debian-installer/amd64/initrd.gz",
        "  APPEND initrd=debian-installer/amd64/initrd.gz %s" % kernel_args(settings),
        ""])


def preseed(settings):
    mirror = re.match(r"^(https?)://([^/]+)(/.*)?$", settings["mirror"])
    if not mirror:
        raise ProvisioningError("mirror must be an http(s) URL, got %r" % settings["mirror"])
    late = ("wget -q -O /tmp/esd-apply-image.sh %s && sh /tmp/esd-apply-image.sh" % settings["apply_script_url"])
    lines = [
        "# esd.osp provisioning: Debian installer answers for %s %s" % (settings["family"], settings["version"]),
        "# The installer makes a minimal system; preseed/late_command then applies the image over it.",
        "d-i debian-installer/locale string %s" % settings["locale"],
        "d-i keyboard-configuration/xkb-keymap select %s" % settings["keyboard"],
        "d-i netcfg/choose_interface select auto",
        "d-i netcfg/get_hostname string %s" % settings["hostname"],
        "d-i netcfg/get_domain string %s" % settings["domain"],
        "d-i mirror/country string manual",
        "d-i mirror/protocol string %s" % mirror.group(1),
        "d-i mirror/http/hostname string %s" % mirror.group(2),
        "d-i mirror/http/directory string %s" % (mirror.group(3) or "/debian"),
        "d-i mirror/http/proxy string",
        "d-i mirror/suite string %s" % settings["suite"],
        "d-i clock-setup/utc boolean true",
        "d-i time/zone string %s" % settings["timezone"],
        "d-i clock-setup/ntp boolean true",
        "d-i passwd/root-login boolean false",
        "d-i passwd/make-user boolean true",
        "d-i passwd/user-fullname string esd.osp administrator",
        "d-i passwd/username string %s" % settings["admin_user"],
        "d-i passwd/user-password-crypted password !",
        "d-i partman-auto/disk string %s" % settings["disk"],
        "d-i partman-auto/method string lvm",
        "d-i partman-auto-lvm/guided_size string max",
        "d-i partman-lvm/device_remove_lvm boolean true",
        "d-i partman-lvm/confirm boolean true",
        "d-i partman-lvm/confirm_nooverwrite boolean true",
        "d-i partman-auto/choose_recipe select atomic",
        "d-i partman-partitioning/confirm_write_new_label boolean true",
        "d-i partman/choose_partition select finish",
        "d-i partman/confirm boolean true",
        "d-i partman/confirm_nooverwrite boolean true",
        "d-i apt-setup/services-select multiselect security, updates",
        "tasksel tasksel/first multiselect standard, ssh-server",
        "d-i pkgsel/include string ca-certificates wget",
        "d-i pkgsel/upgrade select none",
        "popularity-contest popularity-contest/participate boolean false",
        "d-i grub-installer/only_debian boolean true",
        "d-i grub-installer/bootdev string %s" % settings["disk"],
        "d-i preseed/late_command string %s" % late,
        "d-i finish-install/reboot_in_progress note",
        ""]
    return "\n".join(lines)


def apply_script(settings):
    excludes = " ".join("--exclude=%s" % shell_quote(p) for p in settings["keep"])
    return """#!/bin/sh
# esd.osp provisioning: apply the image %(family)s %(version)s over the system the Debian installer just made
# (run by preseed/late_command, the new system is mounted on /target).
set -eu
IMAGE_URL=%(url)s
IMAGE_SHA256=%(sha)s
ARCHIVE=/target/var/tmp/esd-image.rootfs.tar.gz
echo "esd.osp: fetching %(family)s %(version)s"
wget -q -O "$ARCHIVE" "$IMAGE_URL"
echo "$IMAGE_SHA256  $ARCHIVE" | sha256sum -c -
# Unpacked by the new system's own GNU tar, owners and file capabilities kept; what is specific to this machine
# (made by the installer) stays.
in-target tar --numeric-owner --xattrs --xattrs-include='*' -xpzf /var/tmp/esd-image.rootfs.tar.gz -C / %(excludes)s
rm -f "$ARCHIVE"
# cloud-init's NoCloud data source from the local disk: the first boot creates the administrator and runs firstboot.
mkdir -p /target/var/lib/cloud/seed/nocloud
wget -q -O /target/var/lib/cloud/seed/nocloud/user-data %(user_data_url)s
printf 'instance-id: %%s\\nlocal-hostname: %%s\\n' "esd-$(cat /proc/sys/kernel/random/uuid)" "$(cat /target/etc/hostname)" \\
  >/target/var/lib/cloud/seed/nocloud/meta-data
# The image is what boots: its kernel and boot loader are configured for this disk.
if in-target sh -c 'command -v update-initramfs' >/dev/null 2>&1; then in-target update-initramfs -u -k all; fi
if in-target sh -c 'command -v update-grub' >/dev/null 2>&1; then in-target update-grub; fi
echo "esd.osp: %(family)s %(version)s applied"
""" % {"family": settings["family"], "version": settings["version"], "url": shell_quote(settings["image_url"]),
       "sha": shell_quote(settings["image_sha256"]), "excludes": excludes,
       "user_data_url": shell_quote(settings["user_data_url"])}


def user_data(settings, dump):
    """The cloud-config document (text), made with the YAML dumper `dump` (yaml.safe_dump)."""
    provisioned = {"family": settings["family"], "version": settings["version"], "sha256": settings["image_sha256"],
                   "mechanism": "esd.osp.provisioning"}
    config = {
        "hostname": settings["hostname"],
        "fqdn": "%s.%s" % (settings["hostname"], settings["domain"]),
        "manage_etc_hosts": True,
        "timezone": settings["timezone"],
        "disable_root": True,
        "ssh_pwauth": False,
        "users": [{
            "name": settings["admin_user"],
            "gecos": "esd.osp administrator",
            "groups": [settings["admin_group"]] if settings["admin_group"] else [],
            "shell": "/bin/bash",
            "lock_passwd": True,
            "ssh_authorized_keys": list(settings["ssh_authorized_keys"]),
        }],
        "write_files": [{"path": "/etc/esd/provisioned.json", "permissions": "0644", "owner": "root:root",
                         "content": json.dumps(provisioned, sort_keys=True) + "\n"}],
        "runcmd": [["sh", "-c", "[ ! -x /usr/lib/esd/firstboot ] || /usr/lib/esd/firstboot"]],
        "final_message": "esd.osp: %s %s provisioned in $UPTIME s" % (settings["family"], settings["version"]),
    }
    if settings.get("phone_home_url"):
        config["phone_home"] = {"url": settings["phone_home_url"], "post": ["instance_id", "hostname", "fqdn"],
                                "tries": 5}
    return "#cloud-config\n" + dump(config, default_flow_style=False, sort_keys=True)


def meta_data(settings):
    return "instance-id: esd-%s-%s\nlocal-hostname: %s\n" % (settings["family"], settings["version"], settings["hostname"])


def files_for(settings, dump):
    stem = "%s-%s" % (settings["family"], settings["version"])
    return [
        ("ipxe/%s.ipxe" % stem, ipxe_script(settings), "ipxe"),
        ("pxelinux.cfg/default", pxe_config(settings), "pxe"),
        ("preseed/%s.cfg" % stem, preseed(settings), "preseed"),
        ("scripts/apply-image.sh", apply_script(settings), "shell"),
        ("cloud-init/user-data", user_data(settings, dump), "cloud-config"),
        ("cloud-init/meta-data", meta_data(settings), "meta-data"),
    ]


# --- validation --------------------------------------------------------------------------------------

def validate_ipxe(text):
    problems = []
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#!ipxe":
        problems.append("an iPXE script must start with #!ipxe")
    for number, line in enumerate(lines[1:], 2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(":"):
            continue
        command = stripped.split()[0]
        if command not in IPXE_COMMANDS:
            problems.append("line %d: unknown iPXE command %r" % (number, command))
        for url in re.findall(r"(?:^|\s)((?:https?|tftp)://\S+)", stripped):
            if " " in url:
                problems.append("line %d: malformed URL %r" % (number, url))
    text_commands = [line.split()[0] for line in lines[1:] if line.strip() and not line.strip().startswith("#")]
    for needed in ("kernel", "initrd", "boot"):
        if needed not in text_commands:
            problems.append("the iPXE script never runs %s" % needed)
    if "auto=true" not in text or "url=" not in text:
        problems.append("the kernel command line lacks auto=true and the preseed url= (the install would ask questions)")
    return problems


def validate_pxe(text):
    problems = []
    labels, default = [], None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword = stripped.split()[0].upper()
        if keyword not in PXE_KEYWORDS:
            problems.append("line %d: unknown PXE keyword %r" % (number, stripped.split()[0]))
        if keyword == "LABEL":
            labels.append(stripped.split(None, 1)[1] if len(stripped.split()) > 1 else "")
        if keyword == "DEFAULT":
            default = stripped.split(None, 1)[1] if len(stripped.split()) > 1 else ""
    if default is None or default not in labels:
        problems.append("DEFAULT %r names no LABEL (labels: %s)" % (default, ", ".join(labels) or "none"))
    if "auto=true" not in text:
        problems.append("the APPEND line lacks auto=true (the install would ask questions)")
    return problems


# how often a silent debconf-set-selections --checkonly failure (its database locked) is tried
DEBCONF_ATTEMPTS = 20


def validate_preseed(path, debconf="debconf-set-selections"):
    """Our own checks of every answer line, then debconf-set-selections --checkonly when it is installed."""
    problems = []
    answers = {}
    with open(path) as handle:
        text = handle.read()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 3:
            problems.append("line %d: an answer needs owner, question, type and value: %r" % (number, line))
            continue
        owner, question, kind = fields[:3]
        if kind not in PRESEED_TYPES:
            problems.append("line %d: %s has the unknown type %r" % (number, question, kind))
        if kind == "boolean" and (fields[3] if len(fields) > 3 else "") not in ("true", "false"):
            problems.append("line %d: %s is boolean but has the value %r" % (number, question, fields[3:]))
        answers[question] = fields[3] if len(fields) > 3 else ""
    for question in PRESEED_REQUIRED:
        if question not in answers:
            problems.append("the preseed does not answer %s (needed for an unattended install)" % question)
    validator = "builtin"
    if shutil.which(debconf):
        validator = "debconf-set-selections --checkonly"
        # --checkonly still takes the debconf database's locks (flock, non-blocking) and exits 1 without a word
        # while another debconf process holds them: only a silent failure is retried, a parse error never.
        for attempt in range(DEBCONF_ATTEMPTS):
            proc = subprocess.run([debconf, "--checkonly", path], check=False, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            output = proc.stdout.decode("utf-8", "replace").strip()
            if proc.returncode == 0 or output:
                break
            time.sleep(0.05 * (attempt + 1))
        if output:
            problems.append("debconf-set-selections: %s" % output)
        elif proc.returncode != 0:
            problems.append("debconf-set-selections --checkonly exited %d without a message %d times (is the debconf "
                            "database locked by another process?)" % (proc.returncode, DEBCONF_ATTEMPTS))
    return problems, validator


def validate_shell(path):
    proc = subprocess.run(["sh", "-n", path], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return ([] if proc.returncode == 0 else ["sh -n: %s" % proc.stdout.decode("utf-8", "replace").strip()]), "sh -n"


def _schema_keys(schema):
    keys = set()
    for definition in (schema.get("$defs") or {}).values():
        keys.update((definition.get("properties") or {}).keys())
    keys.update((schema.get("properties") or {}).keys())
    return keys


def validate_cloud_config(path, load, schema_path=None, jsonschema=None, cloud_init="cloud-init"):
    """Validate user-data: cloud-init itself, else its JSON schema, else our structural check.

    load: a YAML loader (yaml.safe_load). jsonschema: the jsonschema module or None. Returns (problems, validator).
    """
    with open(path) as handle:
        text = handle.read()
    if not text.startswith("#cloud-config"):
        return ["user-data must start with #cloud-config"], "builtin"
    binary = shutil.which(cloud_init)
    if binary:
        proc = subprocess.run([binary, "schema", "--config-file", path], check=False, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        output = proc.stdout.decode("utf-8", "replace").strip()
        return ([] if proc.returncode == 0 else ["cloud-init schema: %s" % output]), "cloud-init schema"
    try:
        document = load(text)
    except Exception as exc:  # the YAML parser's errors have no common base we can import here
        return ["user-data is not valid YAML: %s" % exc], "builtin"
    if not isinstance(document, dict):
        return ["user-data must be a mapping"], "builtin"
    schema_path = schema_path or next((p for p in SCHEMA_LOCATIONS if os.path.isfile(p)), None)
    if schema_path and jsonschema is not None:
        with open(schema_path) as handle:
            schema = json.load(handle)
        validator_class = jsonschema.validators.validator_for(schema)
        errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.path))
        problems = sorted(set("%s: %s" % ("/".join(str(p) for p in e.path) or "(top)", e.message) for e in errors))
        # cloud-init 22.4 warns about unknown top-level keys only in later versions; we refuse them now
        known = _schema_keys(schema)
        problems += ["unknown top-level key %r (not in cloud-init's schema)" % key for key in sorted(document) if key not in known]
        return problems, "cloud-init JSON schema (%s) with jsonschema" % os.path.basename(schema_path)
    problems = ["unknown top-level key %r" % key for key in sorted(document) if key not in CLOUD_CONFIG_KEYS]
    for key, kind in (("users", list), ("runcmd", list), ("write_files", list), ("ssh_pwauth", bool),
                      ("disable_root", bool), ("hostname", str)):
        if key in document and not isinstance(document[key], kind):
            problems.append("%s must be a %s" % (key, kind.__name__))
    return problems, "builtin (no cloud-init and no schema found)"


def validate_dir(root, load, schema_path=None, jsonschema=None):
    """Validate every file of a generated mechanism; returns {relative path: {validator, problems}}."""
    results = {}
    for current, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(current, name)
            rel = os.path.relpath(full, root)
            if rel.endswith(".ipxe"):
                with open(full) as handle:
                    results[rel] = {"validator": "ipxe grammar", "problems": validate_ipxe(handle.read())}
            elif rel.startswith("pxelinux.cfg/"):
                with open(full) as handle:
                    results[rel] = {"validator": "pxelinux grammar", "problems": validate_pxe(handle.read())}
            elif rel.startswith("preseed/") and rel.endswith(".cfg"):
                problems, validator = validate_preseed(full)
                results[rel] = {"validator": validator, "problems": problems}
            elif rel.endswith(".sh"):
                problems, validator = validate_shell(full)
                results[rel] = {"validator": validator, "problems": problems}
            elif rel == "cloud-init/user-data":
                problems, validator = validate_cloud_config(full, load, schema_path, jsonschema)
                results[rel] = {"validator": validator, "problems": problems}
    return results


# --- the whole mechanism --------------------------------------------------------------------------

def write_seed_iso(directory, target, epoch, binary="xorriso"):
    """A NoCloud seed ISO (volume CIDATA) with user-data and meta-data, reproducible."""
    staging = tempfile.mkdtemp(prefix=".seed-", dir=os.path.dirname(target))
    try:
        for name in ("user-data", "meta-data"):
            shutil.copyfile(os.path.join(directory, name), os.path.join(staging, name))
            os.utime(os.path.join(staging, name), (epoch, epoch))
        os.utime(staging, (epoch, epoch))
        if os.path.exists(target):
            os.unlink(target)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        proc = subprocess.run([binary, "-no_rc", "-report_about", "WARNING", "-outdev", target, "-volid", "CIDATA",
                               "-joliet", "on", "-volume_date", "all_file_dates", "set_to_mtime", "-map", staging, "/",
                               "-commit"], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ProvisioningError("writing the cloud-init seed ISO failed: %s" % proc.stdout.decode("utf-8", "replace"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def generate(settings, dest, dump, load, schema_path=None, jsonschema=None, seed_iso=True, force=False,
             check_mode=False, xorriso="xorriso"):
    """Write the mechanism into dest/<family>-<version>/, validate it; returns the result dict."""
    stem = "%s-%s" % (settings["family"], settings["version"])
    target = os.path.join(dest, stem)
    files = files_for(settings, dump)
    manifest = {"format": FORMAT, "family": settings["family"], "version": settings["version"],
                "image_sha256": settings["image_sha256"], "image_url": settings["image_url"],
                "http_base": settings["http_base"], "hostname": settings["hostname"],
                "files": sorted(path for path, dummy, dummy2 in files) + (["cloud-init/seed.iso"] if seed_iso else [])}
    current = {}
    for path, content, dummy in files:
        full = os.path.join(target, path)
        current[path] = open(full).read() if os.path.isfile(full) else None
    changed = any(current[path] != content for path, content, dummy in files)
    if changed and not force and any(v is not None for v in current.values()):
        differing = [p for p, c, dummy in files if current[p] is not None and current[p] != c]
        if differing:
            raise ProvisioningError("%s already holds a different provisioning mechanism for %s (%s): set force to "
                                    "replace it" % (target, stem, ", ".join(differing)))
    result = {"changed": changed, "path": target, "manifest": manifest}
    if check_mode:
        return result
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o755)
    staging = tempfile.mkdtemp(prefix=".%s-" % stem, dir=dest) if changed else target
    try:
        if changed:
            for path, content, dummy in files:
                full = os.path.join(staging, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as handle:
                    handle.write(content)
                os.chmod(full, 0o755 if path.endswith(".sh") else 0o644)
        validation = validate_dir(staging, load, schema_path, jsonschema)
        problems = ["%s: %s" % (path, problem) for path, item in sorted(validation.items()) for problem in item["problems"]]
        if problems:
            raise ProvisioningError("the generated provisioning mechanism is invalid: %s" % "; ".join(problems))
        if changed:
            if seed_iso:
                write_seed_iso(os.path.join(staging, "cloud-init"), os.path.join(staging, "cloud-init", "seed.iso"),
                               settings["source_date_epoch"], xorriso)
            with open(os.path.join(staging, "MANIFEST.json"), "wb") as handle:
                handle.write(canonical_json(manifest))
            sums = []
            for current_dir, dirs, names in os.walk(staging):
                for name in names:
                    full = os.path.join(current_dir, name)
                    rel = os.path.relpath(full, staging)
                    if rel != "SHA256SUMS":
                        sums.append("%s  %s\n" % (sha256_file(full), rel))
            with open(os.path.join(staging, "SHA256SUMS"), "w") as handle:
                handle.write("".join(sorted(sums, key=lambda line: line.split("  ", 1)[1])))
            os.chmod(staging, 0o755)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.rename(staging, target)
    except BaseException:
        if changed and os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        raise
    result["validation"] = validation
    result["checksums"] = os.path.join(target, "SHA256SUMS")
    result["sha256"] = sha256_file(result["checksums"])
    return result
