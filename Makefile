# libreplica: the commands the README names.
SO := target/release/libreplica.so
CARGO ?= cargo

.PHONY: build test fault-build unit integration bench demo lint fuzz clean

build:
	$(CARGO) build --release --lib

# Everything: unit tests, then golden SQL, host, workload and interop tests against the
# release build of the extension.
test: build fault-build
	$(CARGO) nextest run --no-fail-fast --cargo-profile dev

# The extension with named crash points, for tests/fault_points.rs (never shipped).
fault-build:
	$(CARGO) build --release --lib --features fault-points --target-dir target/fault

demo: build
	bash sql/demo.sh

bench: build
	/usr/bin/python3 bench/overhead.py --so $(SO)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# 60 s per target with cargo-fuzz (cargo install cargo-fuzz). The machine has only a stable
# toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags; no sanitizer (the code under
# test has no unsafe). New inputs land in fuzz/corpus/<target>/.
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none ltx_decode corpus/ltx_decode -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none wal_parse corpus/wal_parse -- -max_total_time=$(FUZZ_SECONDS)

clean:
	$(CARGO) clean
