#!/bin/sh
# A program that keeps one number in two files, a and b, and must keep them equal.
# It updates them one after the other: a crash between the two writes leaves them
# different. `crash-sim exec` catches it (see docs/crash-testing.md):
#   crash-sim exec --setup 'echo 0 > a; echo 0 > b' --check "$PWD/check-two-files.sh" \
#       -- "$PWD/two-files.sh"
set -e
n=$(cat a)
echo ready
while :; do
    n=$((n + 1))
    echo "$n" > a
    echo "$n" > b
done
