# Environment for working in this repository by hand and for the test suite:
#   source scripts/env.sh
# Run scripts/bootstrap.sh first (make demo / make test do both).
# shellcheck shell=bash

__esd_repo=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)

# The venv's site-packages holds the collections shipped by the `ansible` PyPI package
# (containers.podman, community.general, ansible.posix): there is no Galaxy to install them from.
if [[ -x "$__esd_repo/.venv/bin/python" ]]; then
  __esd_site_packages=$("$__esd_repo/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
else
  echo "scripts/env.sh: $__esd_repo/.venv is missing; run scripts/bootstrap.sh" >&2
  __esd_site_packages=""
fi

case ":$PATH:" in
  *":$__esd_repo/.venv/bin:"*) ;;
  *) export PATH="$__esd_repo/.venv/bin:$PATH" ;;
esac

export ESD_REPO="$__esd_repo"
export ANSIBLE_CONFIG="$__esd_repo/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$__esd_repo/collections${__esd_site_packages:+:$__esd_site_packages}"
export ANSIBLE_ROLES_PATH="$__esd_repo/roles"
# Podman settings for the test containers, without touching /etc/containers (see the file).
export CONTAINERS_CONF="$__esd_repo/tests/containers.conf"
# `import ansible_collections.esd.osp...` in unit tests, `import esd` from the source tree.
case ":${PYTHONPATH:-}:" in
  *":$__esd_repo/collections:"*) ;;
  *) export PYTHONPATH="$__esd_repo/collections:$__esd_repo/runner${PYTHONPATH:+:$PYTHONPATH}" ;;
esac

unset __esd_repo __esd_site_packages
