# Vigil's build. `make test` is what CI runs (.ci/run); `make run` starts a
# local Vigil with example VMs.

GO        ?= go
PKGS      := ./...
# The whole suite must stay well under 30 minutes on 2 cores.
TEST_TIMEOUT ?= 25m

.PHONY: all build test test-race vet fmt-check generate bench gobench soak run stop qemu guest-image boot-smoke clean

all: build

build:
	$(GO) build -o bin/vigil ./cmd/vigil

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Real QEMU guests are part of the suite: QEMU and the test guest are
# installed or built first (both cached), and a QEMU test that cannot find
# them fails instead of skipping.
test: fmt-check vet guest-image
	VIGIL_REQUIRE_QEMU=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

test-race:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# Regenerates api/v1/zz_generated.deepcopy.go (needs the Go module proxy).
generate:
	$(GO) run k8s.io/code-generator/cmd/deepcopy-gen@v0.37.2 \
		--output-file zz_generated.deepcopy.go \
		--go-header-file hack/boilerplate.go.txt ./api/v1

# The scale harness (issue 7): 10,000 VMs on 100 simulated nodes; the
# report goes to bench-report/ (report.md, report.json, latency.png).
# BENCH_ARGS=--quick for a small run.
bench: build
	bin/vigil bench --out bench-report $(BENCH_ARGS)

# Every Go benchmark, once.
gobench:
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)

# The HA soak at length: random schedules of node crashes, partitions,
# network blips, agent and control-plane restarts (make test runs five,
# from a fixed seed). SOAK_SCHEDULES sets how many; a failure prints the
# seed that replays it (VIGIL_SOAK_SEED=N).
SOAK_SCHEDULES ?= 50
soak:
	VIGIL_SOAK_SCHEDULES=$(SOAK_SCHEDULES) VIGIL_SOAK_SEED=$${VIGIL_SOAK_SEED:-random} \
		$(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./e2e

run: guest-image
	scripts/run.sh

# Stops what make run started.
stop:
	scripts/run.sh stop

# QEMU and the tools the guest image needs, from Debian's archive.
qemu:
	scripts/ensure-qemu.sh

# The test guest (kernel, initramfs, root disk), cached in $$VIGIL_CACHE.
guest-image: qemu
	scripts/build-guest-image.sh >/dev/null

# Boots the guest image by hand and checks every behaviour of its init.
boot-smoke: qemu
	scripts/boot-smoke.sh

clean:
	rm -rf bin .vigil-run
