#!/usr/bin/env bash
# `make dist`: the release extension, stripped (its debug info beside it, linked by
# .gnu_debuglink), then each ecosystem's package built around that same file, all into
# dist/. The version comes from Cargo.toml alone. Every package builder is
# packaging/<ecosystem>/build, called as: build <stripped .so> <version> <dist dir>.
set -euo pipefail
cd "$(dirname "$0")/.."
so=${1:?usage: packaging/dist.sh <release .so>}
out=dist
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || { echo "dist: no version in Cargo.toml" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
cp "$so" "$out/libreplica.so.full"
objcopy --only-keep-debug "$out/libreplica.so.full" "$out/libreplica.so.debug"
objcopy --strip-unneeded --remove-section=.comment "$out/libreplica.so.full" "$out/libreplica.so"
(cd "$out" && objcopy --add-gnu-debuglink=libreplica.so.debug libreplica.so)
rm "$out/libreplica.so.full"
chmod 0644 "$out/libreplica.so" "$out/libreplica.so.debug"
# The newest glibc symbol version the library needs: the oldest glibc it loads on.
glibc=$(objdump -T "$out/libreplica.so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
size=$(stat -c %s "$out/libreplica.so")
if [ "$size" -ge 5000000 ]; then
  echo "dist: libreplica.so is $size bytes, over the 5 MB every package must stay under" >&2
  exit 1
fi
printf '%s\n' "$version" > "$out/VERSION"
printf 'version=%s\nglibc=%s\nso_bytes=%s\nso_sha256=%s\n' "$version" "${glibc#GLIBC_}" "$size" \
  "$(sha256sum "$out/libreplica.so" | cut -d' ' -f1)" > "$out/BUILD"
for eco in python npm ruby; do
  if [ -x "packaging/$eco/build" ]; then
    "packaging/$eco/build" "$PWD/$out/libreplica.so" "$version" "$PWD/$out"
  fi
done
echo "dist: libreplica $version (linux-x86_64, glibc >= ${glibc#GLIBC_}, $size bytes):"
ls -l "$out"
