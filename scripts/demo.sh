#!/usr/bin/env bash
# Run the main demo on the embedded demo fleet: bootstrap, then `esd demo`, which runs a software_release
# change order end to end (build -> test -> approvals by distinct demo users -> beta, go/no-go, waves ->
# client acceptance -> commit) and prints the status report. Extra arguments go to `esd demo`.
# The module-level lifecycle demo without the runner: ansible-playbook -i inventories/demo playbooks/demo.yml
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/bootstrap.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

exec esd demo "$@"
