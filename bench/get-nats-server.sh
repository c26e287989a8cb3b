#!/bin/sh
# JetStream acknowledges after fsync only with `sync_interval: always`, which nats-server has from
# 2.10 on; Debian bookworm ships 2.9.10 (no such setting: it syncs every 2 minutes). This fetches
# Debian trixie's nats-server package with apt-get, using a private apt state under bench/.tools
# (the system's sources, lists and installed packages are not touched), and unpacks its binary to
# bench/.tools/nats-server, where bench/nats-server.ts looks first (after $NATS_SERVER).
#
# usage: sh bench/get-nats-server.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools="$here/.tools"
apt="$tools/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
# The archive this machine's apt already uses (its first URIs: line of a .sources file, or deb line).
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\/debian\)[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
[ -n "$mirror" ] || { echo "no Debian archive found in /etc/apt" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt/sources.list"
opts="-o Dir::Etc::SourceList=$apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt/lists -o Dir::Cache=$apt/cache -o Dir::State::Status=/var/lib/dpkg/status -o APT::Sandbox::User=root"
apt-get $opts update >/dev/null
cd "$apt"
rm -f nats-server_*.deb
apt-get $opts download nats-server
dpkg-deb -x nats-server_*.deb "$apt/root"
cp "$apt/root/usr/sbin/nats-server" "$tools/nats-server"
"$tools/nats-server" --version
