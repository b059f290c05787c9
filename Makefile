# Vigil's build. `make test` is what CI runs (.ci/run); `make run` starts a
# local Vigil (arrives with the server; see README.md).

GO        ?= go
PKGS      := ./...
# The whole suite must stay well under 30 minutes on 2 cores.
TEST_TIMEOUT ?= 25m

.PHONY: all test test-race vet fmt-check generate bench run clean

all: test

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: fmt-check vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

test-race:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# Regenerates api/v1/zz_generated.deepcopy.go (needs the Go module proxy).
generate:
	$(GO) run k8s.io/code-generator/cmd/deepcopy-gen@v0.37.2 \
		--output-file zz_generated.deepcopy.go \
		--go-header-file hack/boilerplate.go.txt ./api/v1

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

run:
	@echo "make run arrives with the server (issue 3/4): there is no vigil server to start yet." >&2
	@exit 1

clean:
	rm -rf bin
