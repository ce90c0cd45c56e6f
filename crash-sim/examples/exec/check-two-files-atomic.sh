#!/bin/sh
# The check of two-files-atomic.sh: the pair `cur` points to holds the same number.
a=$(cat cur/a) || exit 1
b=$(cat cur/b) || exit 1
if [ -z "$a" ] || [ "$a" != "$b" ]; then
    echo "inconsistent: cur -> $(readlink cur), a='$a' b='$b'"
    exit 1
fi
