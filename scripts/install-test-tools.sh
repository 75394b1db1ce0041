#!/usr/bin/env bash
# The tests run the integration guide's Java and Node.js clients, stage network faults
# (tests/faults: network namespaces, nftables, tc), open the /docs page in a headless browser
# (tests/e2e/test_docs_page.py) and run the refresh on Spark reading PostgreSQL over JDBC
# (tests/db/test_spark_engine.py): make sure javac/java (17+), node (18+), ip, tc, nft and chromium
# are on the PATH and the JDBC driver is at /usr/share/java/postgresql.jar, installing them from
# Debian's packages when they are missing and we may (root with apt-get). Otherwise say what to
# install and fail.
set -euo pipefail

missing=()
command -v javac >/dev/null && command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v node >/dev/null || missing+=(nodejs)
command -v ip >/dev/null && command -v tc >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v runuser >/dev/null || missing+=(util-linux)
command -v chromium >/dev/null || missing+=(chromium)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (needed by the client, fault, docs page and Spark refresh tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "make test needs Java 17+ (javac, java), Node.js 18+ (node), ip, tc, nft and chromium on the PATH" \
         "and /usr/share/java/postgresql.jar;" \
         "install: ${missing[*]}" >&2
    exit 1
fi
