#!/bin/sh
# Record each activation in the host's log (inside the install root).
set -eu
mkdir -p "$ESD_ROOT/var/log/hello-agent"
echo "activated $ESD_VERSION (previous: ${ESD_PREVIOUS_VERSION:-none})" >> "$ESD_ROOT/var/log/hello-agent/activations.log"
