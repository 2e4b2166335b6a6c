#!/usr/bin/env bash
# Run `ansible-test sanity` on the esd.osp collection, offline from Galaxy and from
# ci-files.testing.ansible.com (where ansible-test downloads its pip bootstrap script).
#
# Usage: scripts/ansible-test-sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
# The per-test virtual environments ansible-test creates are cached in ~/.ansible/test/venv,
# so only the first run installs their requirements from PyPI.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COLLECTION="$REPO/collections/ansible_collections/esd/osp"

[[ -x "$REPO/.venv/bin/ansible-test" ]] || "$REPO/scripts/bootstrap.sh"

# ansible-test bootstraps pip into each empty venv with get-pip.py from a host we cannot reach;
# it uses a cached copy when there is one. The stand-in below does the same job from the
# standard library (ensurepip) and PyPI. ansible-test passes pip's options and the pinned
# packages (pip==X) on the command line, plus get-pip's own --no-setuptools/--no-wheel.
pip_version=$("$REPO/.venv/bin/python" -c '
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version="3.11"))["pip"])' 2>/dev/null) ||
  pip_version=24.2  # ansible-core 2.19's pin, should the internal API above move
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$get_pip")"
cat >"$get_pip.new" <<'EOF'
"""Stand-in for get-pip.py, written by esd.osp's scripts/ansible-test-sanity.sh."""
import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
pip = [sys.executable, "-m", "pip"]
cert = []
if os.path.exists(CA_BUNDLE):
    # ansible-test runs pip with a scrubbed environment (no PIP_CERT): a venv-local pip.conf makes
    # this venv's later installs trust the system's CA store too (TLS-inspecting proxies).
    with open(os.path.join(sys.prefix, "pip.conf"), "w", encoding="utf-8") as config:
        config.write("[global]\ncert = %s\n" % CA_BUNDLE)
    cert = ["--cert", CA_BUNDLE]
subprocess.check_call(pip + ["install"] + cert + [a for a in sys.argv[1:] if a not in GET_PIP_ONLY])
if "--no-setuptools" in sys.argv:
    # ensurepip of Python < 3.12 also installs setuptools; ansible-test wants a venv without it.
    subprocess.check_call(pip + ["uninstall", "--yes", "--quiet", "setuptools"])
EOF
mv "$get_pip.new" "$get_pip"

# ansible-test sets up its own paths for the collection under test; the repo's development
# variables (scripts/env.sh) would only leak other import paths into its tests.
cd "$COLLECTION"
exec env -u PYTHONPATH -u ANSIBLE_CONFIG -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_ROLES_PATH \
  PATH="$REPO/.venv/bin:$PATH" \
  "$REPO/.venv/bin/ansible-test" sanity --python 3.11 --requirements --color no "$@"
