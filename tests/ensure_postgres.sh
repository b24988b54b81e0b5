#!/bin/sh
# Starts the local PostgreSQL cluster(s) the test suite uses when they are installed but
# stopped. A no-op when they run, when pg_ctlcluster is absent (CI brings its own server), or
# when MODELVAULT_TEST_POSTGRES_URL points elsewhere; the PostgreSQL tests then fail, naming the URL.
set -u
case "${MODELVAULT_TEST_POSTGRES_URL:-}" in
    "" | *@127.0.0.1* | *@localhost*) ;;
    *) exit 0 ;;
esac
command -v pg_ctlcluster >/dev/null 2>&1 || exit 0
[ -d /etc/postgresql ] || exit 0
for version in $(ls /etc/postgresql); do
    for cluster in $(ls "/etc/postgresql/$version"); do
        if ! pg_ctlcluster "$version" "$cluster" status >/dev/null 2>&1; then
            echo "starting PostgreSQL $version/$cluster" >&2
            pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
        fi
    done
done
exit 0
