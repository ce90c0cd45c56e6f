#!/bin/sh
# The check of two-files.sh: a and b hold the same number.
a=$(cat a) || exit 1
b=$(cat b) || exit 1
if [ -z "$a" ] || [ "$a" != "$b" ]; then
    echo "inconsistent: a='$a' b='$b'"
    exit 1
fi
