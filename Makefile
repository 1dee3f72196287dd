# kata-ts: a containerd shim v2 that runs each pod in its own VM.
#   make demo   build everything, start a private containerd, run a container in a VM
#   make test   unit tests, then end-to-end tests with real containerd + QEMU (TCG)
SHELL := /bin/bash
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib/kata-ts
GUEST_DIR ?= /usr/share/kata-ts/guest
# Production hosts use KVM; this only seeds /etc/kata-ts/config.json on install.
ACCEL ?= kvm
# Downloaded and extracted Debian packages for the guest, shared by every clone
# (CI works in a fresh clone each run; the kernel need not be fetched again).
export GUEST_CACHE ?= /var/cache/kata-ts/guest

.PHONY: all deps build guest test test-unit test-e2e demo bench bench-guest install uninstall clean

all: build guest

deps:
	./scripts/install-deps.sh

build: deps
	npx tsc -p tsconfig.json

guest: build
	./guest/build.sh

test-unit: build
	npx jest --selectProjects unit

test-e2e: guest
	npx jest --selectProjects e2e --runInBand

test: test-unit test-e2e

demo: guest
	node dist/scripts/demo.js

# Not part of `make test`: timings are reported as ratios against runc, never asserted.
bench: guest
	node dist/bench/run.js

# Only the guest kernels and rootfs formats (bench/guest-boot.md), a few minutes.
bench-guest: guest
	node dist/bench/guest-boot.js

install: guest
	./scripts/install.sh "$(PREFIX)" "$(LIBDIR)" "$(GUEST_DIR)" "$(ACCEL)"

uninstall:
	rm -rf "$(LIBDIR)" "$(GUEST_DIR)" "$(PREFIX)/bin/containerd-shim-kata-v2" "$(PREFIX)/bin/kata-ts-runtime"

clean:
	rm -rf dist guest/out
