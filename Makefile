# libreplica: the commands the README names.
SO := target/release/libreplica.so
CARGO ?= cargo

.PHONY: build test unit integration bench demo lint fuzz clean

build:
	$(CARGO) build --release --lib

# Everything: unit tests, then golden SQL, host, workload and interop tests against the
# release build of the extension.
test: build
	$(CARGO) nextest run --no-fail-fast --cargo-profile dev

demo: build
	bash sql/demo.sh

bench: build
	/usr/bin/python3 bench/overhead.py --so $(SO)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# 60 s per target; needs cargo-fuzz (cargo install cargo-fuzz) and a nightly-free setup.
fuzz:
	cd fuzz && $(CARGO) fuzz run ltx_decode -- -max_total_time=60
	cd fuzz && $(CARGO) fuzz run wal_parse -- -max_total_time=60

clean:
	$(CARGO) clean
