#!/bin/sh
# Healthy when the agent answers "ok". A host can be marked broken for drills by creating
# $ESD_ROOT/etc/hello-agent/fail-health-check (the rollout tests use this to fail one host).
set -u
if [ -e "$ESD_ROOT/etc/hello-agent/fail-health-check" ]; then
  echo "health check disabled on this host by $ESD_ROOT/etc/hello-agent/fail-health-check" >&2
  exit 3
fi
answer=$("$ESD_RELEASE_DIR/bin/hello-agent" --health)
[ "$answer" = ok ] || { echo "agent answered '$answer' instead of ok" >&2; exit 2; }
echo "hello-agent $ESD_VERSION healthy"
