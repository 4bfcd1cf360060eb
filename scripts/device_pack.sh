#!/usr/bin/env bash
# Pack run outputs for the trip back from a lent GPU machine, which returns at most 8 files of at most 16 MiB each
# (64 MiB in all): one tar archive split into 15 MiB parts, $OUT/NAME.tar.00, .01, ... (a shipped PiD weight file
# alone is 21 MB, so copying weights as they are loses them).
#   on the device:  scripts/device_pack.sh NAME PATH...
#   back here:      cat FILES_AT/NAME.tar.* | tar -x -C DEST
set -euo pipefail
name=${1:?usage: device_pack.sh NAME PATH...}; shift
[ $# -gt 0 ] || { echo "device_pack.sh: no paths to pack" >&2; exit 2; }
bytes=$(du -cb "$@" | tail -1 | cut -f1)
[ "$bytes" -le $((60 * 1024 * 1024)) ] || { echo "device_pack.sh: $bytes bytes; at most 60 MiB come back" >&2; exit 1; }
tar -c "$@" | split -b 15M -d - "${OUT:?set OUT}/$name.tar."
ls -l "$OUT/$name".tar.*
