#!/bin/sh
# 1.2.0 ships a configuration the agent cannot read: its health check must fail.
echo "probing hello-agent $ESD_VERSION"
echo "configuration unreadable: /opt/esd/hello-agent/current/etc/hello-agent.conf" >&2
exit 3
