#!/usr/bin/env bash
# Replaces the advisory database snapshot in tests/advisory-db with the newest one:
# from a local clone given as $1, else cloned from GitHub.
set -euo pipefail
cd "$(dirname "$0")/../.."
src="${1:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ -z "$src" ]; then
  git clone --quiet --depth 1 https://github.com/rustsec/advisory-db "$tmp/db"
  src="$tmp/db"
fi
commit="$(git -C "$src" rev-parse HEAD)"
date="$(git -C "$src" log -1 --format=%cs)"
rm -rf tests/advisory-db/crates tests/advisory-db/LICENSES
git -C "$src" archive HEAD crates LICENSE.txt LICENSES | tar -x -C tests/advisory-db
sed -i -e "s/^- commit: .*/- commit: \`$commit\`/" -e "s/^- dated: .*/- dated: $date/" tests/advisory-db/README.md
echo "advisory database: $commit ($date)"
