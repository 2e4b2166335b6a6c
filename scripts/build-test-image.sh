#!/usr/bin/env bash
# Build the podman test image localhost/esd-debian12:latest without a container registry:
#   debootstrap --variant=minbase bookworm  ->  podman import localhost/esd-debian12-base
#   scripts/test-image/Containerfile        ->  podman build localhost/esd-debian12:latest
# A no-op when the image exists and was built from the current Containerfile (unless --force).
# Always finishes with a smoke run of the image, so a broken podman fails here, loudly.
#
# Usage: scripts/build-test-image.sh [--force]
# Environment: ESD_DEBIAN_MIRROR (default: the mirror of this machine's apt sources),
#              CONTAINERS_CONF (default: tests/containers.conf).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/tests/containers.conf}

IMAGE=localhost/esd-debian12:latest
BASE_IMAGE=localhost/esd-debian12-base:latest
CONTAINERFILE="$REPO/scripts/test-image/Containerfile"
SUITE=bookworm
LABEL=org.esd-osp.containerfile-sha256

force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build-test-image: unknown argument '$1'" >&2; exit 2 ;;
esac

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() { printf 'build-test-image: ERROR: %s\n' "$*" >&2; exit 1; }

command -v podman >/dev/null || die "podman is not installed (scripts/bootstrap.sh --test installs it)"
podman info >/dev/null 2>&1 || die "podman is unusable: $(podman info 2>&1 | tail -n 3)"

# The Debian mirror this machine already uses (deb822 or one-line sources), else the default.
debian_mirror() {
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '
      /^URIs:/   { uris = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "'"$SUITE"'") found = uris }
      /^$/       { if (found) { print found; exit } }
      END        { if (found) print found }' /etc/apt/sources.list.d/debian.sources | head -n 1)
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $3 == "'"$SUITE"'" { print $2; exit }' /etc/apt/sources.list)
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

want_sha=$(sha256sum "$CONTAINERFILE" | cut -d' ' -f1)
have_sha=$(podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)

if ((force)) || [[ "$have_sha" != "$want_sha" ]]; then
  started=$SECONDS
  if ((force)) || ! podman image exists "$BASE_IMAGE"; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/bootstrap.sh --test installs it)"
    ((EUID == 0)) || die "debootstrap needs root to build the base image"
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /var/tmp/esd-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
      { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
    rm -f "$rootfs.log"
    log "importing $BASE_IMAGE"
    tar -C "$rootfs" --numeric-owner -c . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
  log "building $IMAGE"
  # Host network: the build only talks to the Debian mirror, and the sandboxes we run in
  # do not always allow podman to set up a bridge.
  build_log=$(mktemp /var/tmp/esd-image-build.XXXXXX)
  podman build --pull=never --network=host --label "$LABEL=$want_sha" \
    -t "$IMAGE" -f "$CONTAINERFILE" "$REPO/scripts/test-image" >"$build_log" 2>&1 ||
    { tail -n 40 "$build_log" >&2; rm -f "$build_log"; die "podman build failed"; }
  rm -f "$build_log"
  log "image ready in $((SECONDS - started)) s"
fi

out=$(podman run --rm --pull=never "$IMAGE" python3 -c 'import sys; print(sys.version_info[0])' 2>&1) &&
  [[ "$out" == 3 ]] || die "podman cannot run $IMAGE: $out"
log "$IMAGE is ready"
