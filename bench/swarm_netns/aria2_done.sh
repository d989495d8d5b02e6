#!/bin/bash
# aria2c --on-bt-download-complete hook: the moment the download completed
# (before seeding), into $SWARM_DONE.
echo "$EPOCHREALTIME" > "$SWARM_DONE.tmp" && mv "$SWARM_DONE.tmp" "$SWARM_DONE"
