# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: tools browser build demo stack-up stack-down package deploy-check chaos fuzz test test-short vet fmt-check bench bench-scale bench-cutover

tools: ## install the pinned npm tools into .tools/ (Azurite, the KQL parser, the OpenAPI validator, Newman)
	@./scripts/install-tools.sh

build:
	$(GO) build -o bin/handler ./handler
	$(GO) build -o bin/fhirsim ./cmd/fhirsim
	$(GO) build -o bin/devhost ./cmd/devhost
	$(GO) build -o bin/fhirmigrate ./cmd/fhirmigrate

demo: ## the README's first command: a whole migration on the local stack (SOURCE_KIND=bulk-data: from a Bulk Data server)
	@SOURCE_KIND=$(SOURCE_KIND) ./scripts/demo.sh

stack-up: ## the local stack, left running for Postman or curl (SEED_PATIENTS sets the seed size)
	@./scripts/stack.sh up

stack-down:
	@./scripts/stack.sh down

package: ## the Azure Functions zip: dist/fhir-migrator.zip (static linux/amd64 bin/handler, host.json, function folders)
	@./scripts/package.sh

deploy-check: ## what a first `azd up` needs: azd 1.26.0+, its alpha feature for language custom, go
	@./scripts/deploy-check.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

browser: ## the headless browser the report page's tests drive (Debian's chromium, apt)
	@./scripts/install-tools.sh --browser

test: tools browser fmt-check vet fuzz ## a short fuzz of each target, then unit tests, stack-level tests and a small chaos run with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: tools
	$(GO) test -short -count=1 ./...

chaos: ## 3 migrations against faulty simulators, duplicate/dropped messages and handler kills; ends with the summary line
	$(GO) run ./cmd/chaos

# Each fuzz target briefly (their seed corpora already run in every go test). FUZZTIME=500000x for longer.
# The budget is a count of inputs, not a duration: with a duration, Go 1.26's fuzzing coordinator can fail a target
# with a bare "context deadline exceeded" when its deadline fires while a starved worker is mid-call (the race in
# src/internal/fuzz/fuzz.go's stop, go.dev/issue/75804, fixed in Go 1.27); a count sets no deadline to race.
# A target that fails fails make fuzz, its failing input kept under testdata/fuzz, unless the fuzzer reported a lost
# worker (Go's own message) and the input passes under `go test -run`: then it moves to test-output/fuzz-lost/.
FUZZTIME ?= 20000x
FUZZ_TARGETS := internal/migration:FuzzStart internal/migration:FuzzMessages internal/migration:FuzzResourceLine \
	internal/migration:FuzzErrorLine internal/fhir:FuzzParseManifest internal/fhir:FuzzParseImportStatus \
	internal/funcs:FuzzDecodeInvokeRequest internal/fhirsim:FuzzParseDateFilter internal/api:FuzzDecode \
	handler:FuzzAPIRoutes internal/hostroute:FuzzMatch
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh $(FUZZ_TARGETS)

bench: ## benchmarks (speed and memory are measured here, never asserted in tests)
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-scale: tools ## a billion modelled resources through the local stack under the rate model (about 15 minutes): one line, and bench/out/scale.json
	$(GO) run ./cmd/benchscale

bench-cutover: tools ## the same billion synced while the source is written, then cut over (about 27 minutes): the cutover line, and bench/out/cutover.json
	$(GO) run ./cmd/benchscale -cutover
