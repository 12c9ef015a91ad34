# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: tools build demo stack-up stack-down package test test-short vet fmt-check bench

tools: ## install the pinned Azurite into .tools/
	@./scripts/install-tools.sh

build:
	$(GO) build -o bin/handler ./handler
	$(GO) build -o bin/fhirsim ./cmd/fhirsim
	$(GO) build -o bin/devhost ./cmd/devhost
	$(GO) build -o bin/fhirmigrate ./cmd/fhirmigrate

demo: ## the README's first command: a whole migration on the local stack
	@./scripts/demo.sh

stack-up: ## the local stack, left running for Postman or curl (SEED_PATIENTS sets the seed size)
	@./scripts/stack.sh up

stack-down:
	@./scripts/stack.sh down

package: ## the Azure Functions zip: dist/fhir-migrator.zip (static linux/amd64 bin/handler, host.json, function folders)
	@./scripts/package.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: tools fmt-check vet ## unit tests and stack-level tests, with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: tools
	$(GO) test -short -count=1 ./...

bench: ## benchmarks (speed and memory are measured here, never asserted in tests)
	$(GO) test -run '^$$' -bench . -benchmem ./...
