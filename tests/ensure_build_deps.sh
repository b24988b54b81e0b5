#!/bin/sh
# Installs what the native part of `audit verify` (src/modelvault/_fastscan.c) is built with,
# when it is missing and this is a Debian machine where we may: a C compiler and the SQLite
# and OpenSSL headers. The install works without them (the scan then runs in Python), but the
# test suite checks that the native part was built. Elsewhere it only says what is missing.
set -u
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
[ -f /usr/include/sqlite3.h ] || missing="$missing libsqlite3-dev"
[ -f /usr/include/openssl/evp.h ] || missing="$missing libssl-dev"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing$missing (to build modelvault's native audit scan)" >&2
    apt-get install -y -q$missing >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q$missing >/dev/null 2>&1; } ||
        echo "could not install$missing" >&2
else
    echo "modelvault's native audit scan needs$missing; without it \`audit verify\` runs in Python" >&2
fi
exit 0
