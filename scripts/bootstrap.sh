#!/usr/bin/env bash
# Bring a fresh Debian 12 machine to the point where the demo (default) or the whole
# test suite (--test) can run:
#   1. the Debian packages they need (installed only when missing, apt-get update once),
#   2. the project venv .venv with the pinned Python dependencies (pip install -e '.[test]'),
#   3. with --test: the podman test image localhost/esd-debian12:latest (no registry needed).
# Every step is skipped quickly when already done, so `make demo`/`make test` can always call it.
#
# Usage: scripts/bootstrap.sh [--test] [--no-apt] [--force-venv]
#   --test        also install the test tools (podman, debootstrap, chromium, ...) and build the image
#   --no-apt      never call apt-get; fail if a required package is missing
#   --force-venv  recreate .venv even when it is up to date
# Environment: PYTHON (interpreter for the venv, default python3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

mode="demo"
use_apt=1
force_venv=0
for arg in "$@"; do
  case "$arg" in
    --test) mode="test" ;;
    --no-apt) use_apt=0 ;;
    --force-venv) force_venv=1 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bootstrap: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages ---------------------------------------------------------------
# demo: the venv needs python3-venv; the demo's build stage virus-scans sources with ClamAV.
demo_packages=(python3-venv ca-certificates clamav)
# test: podman with runc (see tests/containers.conf) and the network stack it was verified with
# (netavark + aardvark-dns + iptables; without recommends apt would pick the CNI plugins instead),
# its rootless/overlay helpers; debootstrap for the registry-free test image; nginx for depot
# servers; xorriso for media images; chromium for rendering/checking HTML reports.
test_packages=(podman runc netavark aardvark-dns iptables catatonit uidmap slirp4netns fuse-overlayfs
  debootstrap nginx-light xorriso chromium)

packages=("${demo_packages[@]}")
[[ $mode == test ]] && packages+=("${test_packages[@]}")

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
if command -v dpkg-query >/dev/null; then
  for pkg in "${packages[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
else
  log "not a Debian-based system: skipping the package check (needed: ${packages[*]})"
fi

if ((${#missing[@]})); then
  ((use_apt)) || die "missing Debian packages: ${missing[*]} (run without --no-apt, as root)"
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "missing Debian packages: ${missing[*]}; run as root or install sudo"
    sudo=(sudo -n)
  fi
  log "installing Debian packages: ${missing[*]}"
  apt_opts=(-o DPkg::Lock::Timeout=600 -q)
  # On throw-away CI machines skip dpkg's fsyncs: several times faster on busy disks, and
  # a crash mid-install only loses a machine that is discarded anyway. Never on other machines.
  case "${CI:-}" in
    true | 1 | yes) apt_opts+=(-o DPkg::Options::=--force-unsafe-io) ;;
  esac
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
    --no-install-recommends "${missing[@]}" </dev/null
fi

# --- 2. the project venv -----------------------------------------------------------------
python=${PYTHON:-python3}
venv="$REPO/.venv"
stamp="$venv/.esd-bootstrap"
# The editable install only maps packages that exist when it runs: make sure `esd` does.
[[ -f runner/esd/__init__.py ]] || die "runner/esd/__init__.py is missing (the esd package)"

# Key the stamp on everything that decides the venv's content.
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
have_stamp=$(cat "$stamp" 2>/dev/null || true)

if ((force_venv)) || [[ "$want_stamp" != "$have_stamp" ]] || ! "$venv/bin/python" -c '' 2>/dev/null; then
  started=$SECONDS
  if ((force_venv)) || ! "$venv/bin/python" -c '' 2>/dev/null; then
    log "creating $venv with $("$python" -c 'import sys; print(sys.executable)')"
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
  rm -f "$stamp"
  # Trust the system's CA store (where Debian and TLS-inspecting proxies put their CAs), not only
  # pip's bundled certifi. A venv's own pip.conf applies to this venv alone.
  if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$venv/pip.conf"
  fi
  log "installing the pinned Python dependencies (pip install -e '.[test]')"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
  printf '%s\n' "$want_stamp" >"$stamp"
  log "venv ready in $((SECONDS - started)) s"
else
  log "venv up to date"
fi

# --- 3. the podman test image --------------------------------------------------------------
if [[ $mode == test ]]; then
  "$REPO/scripts/build-test-image.sh"
fi
