# vnet — build, run, test. See README.md.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin
PREFIX ?= /usr/local

.PHONY: all build deps run test test-unit bench fuzz clean

all: build

deps:
	./scripts/deps.sh

build:
	$(GO) build -o $(BIN)/vnetd ./cmd/vnetd
	$(GO) build -o $(BIN)/vnetctl ./cmd/vnetctl

# Builds and runs the daemon in the foreground with the default network.
run: deps build
	./$(BIN)/vnetd

# Every test: unit, golden, namespace and end-to-end (needs root for the
# namespace tests; they skip without it).
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-unit:
	$(GO) test -count=1 ./xml/... ./dnsmasq/... ./firewall/... ./daemon/... ./cmd/...

# Benchmarks that print median and p95 of net-define/start/destroy and the
# time to a new guest's first DHCP lease (in a throwaway namespace).
bench: deps
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./test/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseFormat -fuzztime 30s ./xml/
	$(GO) test -run '^$$' -fuzz FuzzGenerate -fuzztime 30s ./dnsmasq/

clean:
	rm -rf $(BIN)
