#!/usr/bin/env bash
# What `make test-container` needs (tests/container): Debian's docker.io (dockerd, containerd,
# runc) and mmdebstrap, installed when missing; and the docker compose v2 and buildx plugins,
# which Debian 12 does not package (its docker-compose 1.29 rejects our compose file): they are
# taken from Debian 13 (trixie) as .deb files, with a private apt sources list that leaves the
# machine's apt alone, and unpacked into .container-tools/cli-plugins of this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "make test-container runs a Docker engine of its own and must run as root" >&2
    exit 1
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v unshare >/dev/null || missing+=(util-linux)
command -v nft >/dev/null || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (the container test's engine and base image builder)"
    # The test starts an engine of its own; the package must not start the system's (which
    # would own docker0 and the iptables chains). policy-rc.d tells it not to, during the install.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v docker >/dev/null || { echo "no docker client: install docker.io" >&2; exit 1; }

tools=.container-tools
plugins=$tools/cli-plugins
if [ ! -x "$plugins/docker-compose" ] || [ ! -x "$plugins/docker-buildx" ]; then
    echo "fetching the docker compose and buildx plugins from Debian 13 (trixie)"
    apt_dir=$tools/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$plugins"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        > "$apt_dir/sources.list"
    apt_options=(-o "Dir::Etc::SourceList=$PWD/$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
                 -o "Dir::State::Lists=$PWD/$apt_dir/lists" -o "Dir::Cache=$PWD/$apt_dir"
                 -o "Dir::Cache::Archives=$PWD/$apt_dir/archives" -o APT::Sandbox::User=root)
    apt-get -qq "${apt_options[@]}" update
    (cd "$apt_dir" && apt-get -qq "${apt_options[@]}" download docker-compose docker-buildx)
    for deb in "$apt_dir"/docker-compose_*.deb "$apt_dir"/docker-buildx_*.deb; do
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$plugins" --strip-components=5 \
            ./usr/libexec/docker/cli-plugins/
    done
    rm -rf "$apt_dir"
fi
DOCKER_CONFIG=$tools docker compose version
