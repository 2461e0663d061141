#!/usr/bin/env bash
# Makes sure a Redis server (Debian's redis-server, Redis 7) is installed and prints the
# path of `redis-server`. The tests start their own on a free loopback port
# (LF_REDIS_SERVER names the command).
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2
fi
command -v redis-server
