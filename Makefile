# chatpipe: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
# golangci-lint, built once from the Go module proxy into bin/tools (make lint).
GOLANGCI_VERSION := v2.15.0
GOLANGCI := $(BIN)/tools/golangci-lint-$(GOLANGCI_VERSION)

.PHONY: microbench all deps build lint test test-short run bench vet fmt clean help load verify-flush fuzz chaos chaos-seeds soak console-shots contract

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

deps: ## install valkey-server (bookworm-backports), PostgreSQL and Prometheus when missing (apt, as root)
	@scripts/deps.sh --prometheus

build: ## build bin/ingest and bin/flushworker
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -o $(BIN)/ ./cmd/...

test: deps lint ## install what is missing, then lint and run every test (real Valkey, PostgreSQL, promtool)
	$(GO) test -race -count=1 ./...

test-short: deps ## the quick suites only
	$(GO) test -race -short ./...

run: deps build ## throwaway Valkey and PostgreSQL (data in .run/), ingest on 127.0.0.1:8080, two workers, console, Prometheus (Ctrl-C stops all)
	@scripts/run.sh

bench: deps ## each stage beside this machine's limit, one table in bench/results/ (BENCH_QUICK=1: smaller; BENCH_PROFILE=1: CPU profiles too; BENCH_STAGES=limits,flush,ingest,reference,durability,scaling,endtoend,channels,fanout,edits: some only)
	set -o pipefail; $(GO) test -tags bench -count=1 -v -timeout 30m -run '^TestBench$$' ./internal/bench/ 2>&1 | grep -v '^=== '

microbench: deps ## go test benchmarks of the enqueue script, the HTTP handlers and the batch insert
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/store/ ./internal/api/ ./internal/pg/

vet: lint ## the same as lint

lint: $(GOLANGCI) ## gofmt, go vet, then golangci-lint (.golangci.yml: exhaustive switches, staticcheck, unused, …)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt -w these:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GOLANGCI) run ./...

$(GOLANGCI):
	@echo "lint: building golangci-lint $(GOLANGCI_VERSION) from the Go module proxy (once, about 3 minutes)"
	@mkdir -p $(BIN)/tools
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(BIN)/tools/golangci-lint $@

clean: ## remove bin/ and the data of make run (.run/, and the PostgreSQL folder it links to as root)
	@if [ -L .run/pg ]; then echo "rm -rf $$(readlink .run/pg)"; rm -rf "$$(readlink .run/pg)"; fi
	rm -rf $(BIN) .run

load: build ## send a bounded load (10 000 messages) to the ingest of `make run`
	bin/chatload --messages $${MESSAGES:-10000}

verify-flush: deps ## exactly-once check: 200 000 messages, workers SIGKILLed, PostgreSQL stopped 20 s
	scripts/verify-flush.sh $${MESSAGES:-200000}

console-shots: deps ## screenshots of the operator console's pages (headless Chromium) into bench/results/console-*.png
	mkdir -p bench/results
	CONSOLE_SHOTS=$(CURDIR)/bench/results $(GO) test -count=1 -v -run '^TestConsoleInBrowser$$' ./internal/console/ 2>&1 | grep -E 'screenshot|^(ok|FAIL|---)'

fuzz: deps ## run each fuzz target for FUZZTIME (default 60s)
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $${FUZZTIME:-60s} ./internal/api/
	$(GO) test -run '^$$' -fuzz '^FuzzStructure$$' -fuzztime $${FUZZTIME:-60s} ./internal/api/
	$(GO) test -run '^$$' -fuzz '^FuzzFastDecode$$' -fuzztime $${FUZZTIME:-60s} ./internal/api/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEntry$$' -fuzztime $${FUZZTIME:-60s} ./internal/message/
	$(GO) test -run '^$$' -fuzz '^FuzzScanEntry$$' -fuzztime $${FUZZTIME:-60s} ./internal/message/
	$(GO) test -run '^$$' -fuzz '^FuzzJSON$$' -fuzztime $${FUZZTIME:-60s} ./internal/message/
	$(GO) test -run '^$$' -fuzz '^FuzzReplay$$' -fuzztime $${FUZZTIME:-60s} ./internal/streams/
	$(GO) test -run '^$$' -fuzz '^FuzzCursor$$' -fuzztime $${FUZZTIME:-60s} ./internal/tail/

contract: ## with make run going in another terminal: a TypeScript client generated from GET /openapi.yaml, called; recorded answers checked against it by other validators (needs node, npm)
	scripts/contract/run.sh

chaos: deps ## fault-injection runs proving the invariants (CHAOS_DURATION, default 2m; CHAOS_SEED to replay), the Sentinel failover runs (replica and none) and the partitioned layout on a cluster and on one server
	set -o pipefail; CHAOS_SEED=$${CHAOS_SEED:-$$(date +%s)} CHAOS_DURATION=$${CHAOS_DURATION:-2m} CHAOS_SENTINEL_SLOW=1 $(GO) test -count=1 -v -timeout 40m -run '^TestChaos$$|^TestChaosSentinel|^TestChaosCluster$$|^TestChaosPartitionedStandalone$$' ./internal/chaos/ 2>&1 | grep -v '^=== ' | grep -v 'level=WARN'

chaos-seeds: deps ## the failover runs (cluster, Sentinel, Sentinel with slowed links, TestChaos) with CHAOS_SEEDS seeds each (default 20, from CHAOS_FIRST_SEED=1); prints the pass table
	@scripts/chaos-seeds.sh

soak: deps ## SOAK_DURATION (default 10m) at 70% of the measured maximum, a worker restart a minute; RSS, goroutines, p99
	set -o pipefail; $(GO) test -tags soak -count=1 -v -timeout 90m -run '^TestSoak$$' ./internal/chaos/ 2>&1 | grep -v '^=== '
