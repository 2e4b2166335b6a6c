#!/usr/bin/env bash
# Run the main demo on the embedded demo fleet (inventories/demo): bootstrap, then the demo playbook.
# Extra arguments go to ansible-playbook (e.g. -v, --check).
#
# TODO(runner): when the runner lands, this becomes `exec .venv/bin/esd demo "$@"`, which
# sequences the same playbooks with gates, the ledger and reports.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/bootstrap.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

exec ansible-playbook -i inventories/demo playbooks/demo.yml "$@"
