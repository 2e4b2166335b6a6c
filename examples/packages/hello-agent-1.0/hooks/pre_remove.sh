#!/bin/sh
# Leave a trace that the package was removed cleanly.
set -eu
mkdir -p "$ESD_ROOT/var/log/hello-agent"
echo "removed $ESD_VERSION" >> "$ESD_ROOT/var/log/hello-agent/activations.log"
