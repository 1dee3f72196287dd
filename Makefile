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

.PHONY: all deps build protos guest test test-unit test-e2e test-matrix test-virtiofs test-vsock test-template test-under-load demo bench bench-guest bench-shared-fs bench-spare-shims bench-agent-channel bench-agent-startup bench-clone-profile soak install uninstall clean

all: build guest

deps:
	./scripts/install-deps.sh

build: deps
	npx tsc -p tsconfig.json

guest: build
	./guest/build.sh

# After changing a file in protos/: rewrites protos/generated/messages.d.ts, the
# TypeScript types of every message (protobufjs-cli), and protos/generated/descriptor.json,
# the parsed files the shim and the agent load; a unit test fails while either is stale.
protos: build
	node dist/scripts/generate-proto-types.js

# The vsock backend's tests drive the real vhost-device-vsock (fetched once, cached).
test-unit: build
	KATATS_VSOCK_BACKEND="$$(./scripts/fetch-vhost-device-vsock.sh)" npx jest --selectProjects unit

# CONTAINERD=trixie|unstable runs the e2e suites (or E2E=<paths>) against Debian's
# containerd 1.7 / 2.x, fetched into a cache and put first on PATH (never installed);
# empty: the system's containerd 1.6.
CONTAINERD ?=
E2E ?=
test-e2e: guest
	$(if $(CONTAINERD),PATH="$$(./scripts/fetch-containerd.sh $(CONTAINERD)):$$PATH") KATATS_VSOCK_BACKEND="$$(./scripts/fetch-vhost-device-vsock.sh)" npx jest $(E2E) --selectProjects e2e --runInBand

# containerd 1.7 (trixie) and 2.x (unstable), fetched into a cache, never installed:
# the spine, Task API, CRI pod and spare-shim suites (the full suite runs on the system's 1.6).
MATRIX_E2E ?= tests/e2e/spine.test.ts tests/e2e/task-api.test.ts tests/e2e/cri-kata.test.ts tests/e2e/spare-shims.test.ts
test-matrix: guest
	$(MAKE) test-e2e CONTAINERD=trixie E2E="$(MATRIX_E2E)"
	$(MAKE) test-e2e CONTAINERD=unstable E2E="$(MATRIX_E2E)"

# The same suites with the sandbox directory shared over virtio-fs (shared_fs = "virtio-fs",
# Debian 12's /usr/lib/qemu/virtiofsd) instead of virtio-9p; tests/e2e/shared-fs.test.ts
# (in test-e2e) covers what is particular to it.
VIRTIOFS_E2E ?= tests/e2e/spine.test.ts tests/e2e/task-api.test.ts tests/e2e/cri-kata.test.ts tests/e2e/pod-sizing.test.ts tests/e2e/boundary.test.ts
test-virtiofs: guest
	KATATS_E2E_SHARED_FS=virtio-fs $(MAKE) test-e2e E2E="$(VIRTIOFS_E2E)"

# The same suites, and the debug console, with the agent reached over vsock
# (agent_channel = "hybrid-vsock": vhost-user-vsock-pci + vhost-device-vsock, fetched
# from Debian unstable into a cache by scripts/fetch-vhost-device-vsock.sh).
VSOCK_E2E ?= tests/e2e/spine.test.ts tests/e2e/task-api.test.ts tests/e2e/cri-kata.test.ts tests/e2e/pod-sizing.test.ts tests/e2e/debug-console.test.ts
test-vsock: guest
	KATATS_E2E_AGENT_CHANNEL=hybrid-vsock KATATS_E2E_VSOCK_BACKEND="$$(./scripts/fetch-vhost-device-vsock.sh)" $(MAKE) test-e2e E2E="$(VSOCK_E2E)"

# The same suites with VM templates on ([factory] enable_template) and a spare shim
# daemon that holds a VM restored ahead ([factory] spare_shims = 1, spare_vms = true):
# every pod is a clone of one template, kept in a directory made for the run and
# removed after it, and a pod that finds a spare ready (once its VM is restored, a
# few seconds after the previous pod's Create launched it) runs in the spare's VM; the
# others clone at their Create. The run fails if no pod ran in a spare's VM
# (scripts/spare-use.sh, over the containerd logs it keeps).
# tests/e2e/vm-templates.test.ts and spare-shims.test.ts (in test-e2e) cover what is
# particular to each.
TEMPLATE_E2E ?= tests/e2e/spine.test.ts tests/e2e/task-api.test.ts tests/e2e/cri-kata.test.ts tests/e2e/pod-sizing.test.ts tests/e2e/cri-devices.test.ts
test-template: guest
	dir=$$(mktemp -d /var/tmp/kt-templates-XXXXXX); logs=$$(mktemp -d /var/tmp/katats-template-logs-XXXXXX); \
	KATATS_E2E_TEMPLATE_PATH=$$dir KATATS_E2E_SPARE_SHIMS=1 KATATS_E2E_SPARE_VMS=1 KATATS_E2E_KEEP_LOGS=$$logs $(MAKE) test-e2e E2E="$(TEMPLATE_E2E)"; rc=$$?; \
	if [ $$rc -eq 0 ]; then ./scripts/spare-use.sh "$$logs" || rc=1; fi; rm -rf "$$dir" "$$logs"; exit $$rc

test: test-unit test-e2e test-matrix test-virtiofs test-vsock test-template

# Not part of `make test`: the fault and stress suites ROUNDS (3) times in a row with
# stress-ng keeping every core busy; results in bench/under-load.md.
test-under-load: guest
	./scripts/test-under-load.sh

demo: guest
	node dist/scripts/demo.js

# Not part of `make test`: timings are reported as ratios against runc, never asserted.
bench: guest
	node dist/bench/run.js

# virtio-9p against virtio-fs, same guest and workload, one run (bench/shared-fs.md).
bench-shared-fs: guest
	node dist/bench/shared-fs.js

# Pod start with and without spare shim daemons ([factory] spare_shims), booted and
# template VMs, interleaved (bench/spare-shims.md, copied into results.md by make bench).
bench-spare-shims: guest
	node dist/bench/spare-shims.js

# The agent round trip over virtio-serial and hybrid vsock (bench/agent-channel.md).
bench-agent-channel: guest
	KATATS_VSOCK_BACKEND="$$(./scripts/fetch-vhost-device-vsock.sh)" node dist/bench/agent-channel.js

# The Node agent's start-up in a cold boot, and what node/V8 flags save (bench/agent-startup.md).
bench-agent-startup: guest
	node dist/bench/agent-startup.js

# Where a VM template clone's pod start goes on the guest's side: perf on QEMU's vCPU thread (bench/clone-profile.md).
bench-clone-profile: guest
	node dist/bench/clone-profile.js

# Only the guest kernels and rootfs formats (bench/guest-boot.md), a few minutes.
bench-guest: guest
	node dist/bench/guest-boot.js

# Not part of `make test`: SOAK_RUNS sequential `ctr run --rm` and SOAK_PODS CRI pod
# cycles beside two busy VMs; failures, p50/p99 times and leaks in bench/soak.md.
# Fails on any failure or leak. About an hour at the defaults under TCG on 2 cores.
SOAK_RUNS ?= 200
SOAK_PODS ?= 20
soak: guest
	SOAK_RUNS=$(SOAK_RUNS) SOAK_PODS=$(SOAK_PODS) node dist/bench/soak.js

install: guest
	./scripts/install.sh "$(PREFIX)" "$(LIBDIR)" "$(GUEST_DIR)" "$(ACCEL)"

uninstall:
	rm -rf "$(LIBDIR)" "$(GUEST_DIR)" "$(PREFIX)/bin/containerd-shim-kata-v2" "$(PREFIX)/bin/kata-ts-runtime" "$(PREFIX)/bin/kata-ts-monitor"

clean:
	rm -rf dist guest/out
