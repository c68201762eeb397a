# libreplica: the commands the README names.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
SO := $(TARGET_DIR)/release/libreplica.so
S3_SERVER := $(TARGET_DIR)/release/examples/s3_server
CARGO ?= cargo

.PHONY: build test test-hosts test-slow fault-build demo bench-server bench bench-quick profile lint fuzz clean

build:
	$(CARGO) build --release --lib

# Everything: unit tests, then golden SQL, host, workload and interop tests against the
# release build of the extension.
# TEST_ARGS: more nextest arguments (.ci/run leaves the host matrix to test-hosts).
TEST_ARGS ?=
test: build fault-build
	$(CARGO) nextest run --no-fail-fast --cargo-profile dev --features test-support $(TEST_ARGS)

# The host matrix alone (tests/host_matrix.rs: sqlite3, python3, apsw, Ruby's gem, Active
# Record, Node 22 node:sqlite, datasette), every host required: `bash .ci/install-hosts`
# (as root) installs them. `make test` runs it too, skipping the hosts that are missing.
test-hosts: build
	REPLICA_HOSTS_REQUIRED=1 $(CARGO) nextest run --no-fail-fast --cargo-profile dev --features test-support --test host_matrix

# Longer runs of the races `make test` samples: connections opened before and after the load
# writing at once, ADOPTED_ROUNDS fresh processes with every core kept busy (500 by default,
# as CI runs it: about 6 minutes on 2 cores).
ADOPTED_ROUNDS ?= 500
test-slow: build
	ADOPTED_ROUNDS=$(ADOPTED_ROUNDS) ADOPTED_BUSY=1 $(CARGO) nextest run --no-fail-fast --cargo-profile dev --features test-support --test adopted connections_opened_before_and_after --no-capture

# The extension with named crash points, for tests/fault_points.rs (never shipped).
fault-build:
	$(CARGO) build --release --lib --features fault-points --target-dir target/fault

demo: build
	bash sql/demo.sh

# Plain SQLite, libreplica and the real Litestream against one local S3 server (about 20 min
# on 2 cores; bench-quick or BENCH_ARGS=--quick: under 3 min). Results in bench/results/.
BENCH_ARGS ?=
bench-server:
	$(CARGO) build --release --example s3_server

bench: build bench-server
	/usr/bin/python3 bench/bench.py --so $(SO) --server $(S3_SERVER) $(BENCH_ARGS)

bench-quick: build bench-server
	/usr/bin/python3 bench/bench.py --so $(SO) --server $(S3_SERVER) --quick $(BENCH_ARGS)

# Where the time per commit goes: the bench's autocommit writer under perf (as root, or with
# kernel.perf_event_paranoid ≤ 1), against the profiling build (release code, symbols and line
# tables; the shipped profile is unchanged). Writes bench/results/profile-<date>-<commit>.md.
PROFILE_ARGS ?=
profile: bench-server
	$(CARGO) build --profile profiling --lib
	/usr/bin/python3 bench/profile.py --so $(TARGET_DIR)/profiling/libreplica.so --server $(S3_SERVER) $(PROFILE_ARGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features test-support -- -D warnings
	python3 scripts/check_layers.py
	python3 scripts/check_sizes.py

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
