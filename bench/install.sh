#!/bin/sh
# Installs the peer systems the dlock bench compares against: Debian's etcd-server and
# zookeeper. Idempotent: does nothing when both are already installed. Disables the
# services the packages start by default, because the bench starts its own clusters on
# loopback with temporary data directories.
set -eu

need=""
dpkg -s etcd-server >/dev/null 2>&1 || need="$need etcd-server"
dpkg -s zookeeper >/dev/null 2>&1 || need="$need zookeeper"

if [ -n "$need" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y --no-install-recommends $need
fi

# The packages may start system-wide daemons on the default ports; stop them so they do
# not compete with the bench clusters (ignored where there is no service manager).
for service in etcd zookeeper; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
    systemctl disable "$service" || true
  fi
done

echo "etcd:      $(command -v etcd || echo 'not found') $(etcd --version 2>/dev/null | head -n 1 || true)"
echo "zookeeper: $(ls -d /usr/share/zookeeper 2>/dev/null || echo 'not found')"
