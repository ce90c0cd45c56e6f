#!/bin/sh
# two-files.sh done right: each version of the pair is written into a fresh directory,
# then the symbolic link `cur` is switched to it with one rename(2), which is atomic.
# A crash leaves `cur` at the old pair or the new one, never in between:
#   crash-sim exec --setup 'mkdir v0 && echo 0 > v0/a && echo 0 > v0/b && ln -s v0 cur' \
#       --check "$PWD/check-two-files-atomic.sh" -- "$PWD/two-files-atomic.sh"
set -e
live=$(readlink cur)
# Versions a crash left behind before or after the switch.
for d in v*; do
    [ "$d" = "$live" ] || rm -rf "$d"
done
n=$(cat cur/a)
echo ready
while :; do
    m=$((n + 1))
    mkdir "v$m"
    echo "$m" > "v$m/a"
    echo "$m" > "v$m/b"
    ln -sfn "v$m" cur.new
    mv -T cur.new cur
    rm -rf "v$n"
    n=$m
done
