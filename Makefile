# vnet — build, run, test. See README.md.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin
PREFIX ?= /usr/local

.PHONY: all build deps run test test-unit test-vm-boot vm-boot bench bench-scale fuzz clean install uninstall

all: build

deps:
	./scripts/deps.sh

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/vnetd ./cmd/vnetd
	CGO_ENABLED=0 $(GO) build -o $(BIN)/vnetctl ./cmd/vnetctl
	CGO_ENABLED=0 $(GO) build -o $(BIN)/vnet-bridge-helper ./cmd/vnet-bridge-helper
	CGO_ENABLED=0 $(GO) build -o $(BIN)/vnet-qemu-ifup ./cmd/vnet-qemu-ifup
	ln -sf vnet-qemu-ifup $(BIN)/vnet-qemu-ifdown

# Builds and runs the daemon in the foreground with the default network.
run: deps build
	./$(BIN)/vnetd

# Every test: unit, golden, namespace and end-to-end (needs root for the
# namespace tests; they skip without it), then the systemd boot of a Debian
# VM (test-vm-boot). Prints how long each stage took.
test: deps
	$(GO) mod tidy -diff
	$(GO) vet ./...
	@start=$$(date +%s); $(GO) test -race -count=1 -timeout 15m ./...; rc=$$?; \
		echo "make test: go test ./... took $$(( $$(date +%s) - start )) s"; exit $$rc
	@start=$$(date +%s); $(MAKE) --no-print-directory vm-boot; rc=$$?; \
		echo "make test: systemd boot VM took $$(( $$(date +%s) - start )) s"; exit $$rc

test-unit:
	$(GO) test -count=1 ./xml/... ./dnsmasq/... ./firewall/... ./doctor/... ./daemon/... ./cmd/... ./network/frr/...

# Benchmarks that print median and p95 of net-define/start/destroy and the
# time to a new guest's first DHCP lease (in a throwaway namespace).
bench: deps
	$(GO) test -count=1 -run '^$$' -bench . -skip '^BenchmarkScale$$' -benchtime 1x ./test/

# Starts VNET_BENCH_SCALE networks (default 1000) in a throwaway namespace
# and prints start time per block, net-list, memory, inotify instances and
# fds, daemon restart, periodic verify CPU, destroy, and 8 parallel clients.
VNET_BENCH_SCALE ?= 1000
bench-scale: deps
	VNET_BENCH_SCALE=$(VNET_BENCH_SCALE) $(GO) test -count=1 -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 60m ./test/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseFormat -fuzztime 30s ./xml/
	$(GO) test -run '^$$' -fuzz FuzzGenerate -fuzztime 30s ./dnsmasq/

clean:
	rm -rf $(BIN)

# Installs binaries, the systemd unit, tmpfiles, D-Bus policy and activation,
# man pages and bash completion. DESTDIR is honoured for packaging; the unit's
# ExecStart follows PREFIX.
#
# libvirt-dbus owns the same bus name (org.libvirt): vnet's policy goes under
# its own name next to libvirt-dbus's org.libvirt.conf, and the activation
# file, which the system bus only reads under the name org.libvirt.service,
# is installed only when no other daemon's file of that name is there (see
# README.md, "vnet and libvirt-dbus").
DBUS_POLICY = $(DESTDIR)/usr/share/dbus-1/system.d/vnet-org.libvirt.conf
DBUS_ACTIVATION = $(DESTDIR)/usr/share/dbus-1/system-services/org.libvirt.service
# What marks an activation file as vnet's own.
DBUS_OURS = SystemdService=vnetd.service

install: build
	install -D -m 0755 $(BIN)/vnetd $(DESTDIR)$(PREFIX)/sbin/vnetd
	install -D -m 0755 $(BIN)/vnetctl $(DESTDIR)$(PREFIX)/bin/vnetctl
	# QEMU's helper= and script=/downscript= programs; no setuid bit.
	install -D -m 0755 $(BIN)/vnet-bridge-helper $(DESTDIR)$(PREFIX)/libexec/vnet-bridge-helper
	install -D -m 0755 $(BIN)/vnet-qemu-ifup $(DESTDIR)$(PREFIX)/libexec/vnet-qemu-ifup
	ln -sf vnet-qemu-ifup $(DESTDIR)$(PREFIX)/libexec/vnet-qemu-ifdown
	install -d $(DESTDIR)/etc/systemd/system
	sed -e '/^# Template:/d' -e 's|@SBINDIR@|$(PREFIX)/sbin|g' systemd/vnetd.service.in >$(DESTDIR)/etc/systemd/system/vnetd.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/vnetd.service
	install -D -m 0644 systemd/vnetd.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/vnetd.conf
	install -D -m 0644 systemd/org.libvirt.conf $(DBUS_POLICY)
	@if [ -e $(DBUS_ACTIVATION) ] && ! grep -qx '$(DBUS_OURS)' $(DBUS_ACTIVATION); then \
		echo "$(DBUS_ACTIVATION) is another daemon's (libvirt-dbus?): left as it is, vnetd is started by its unit"; \
	else \
		echo install -D -m 0644 systemd/org.libvirt.service $(DBUS_ACTIVATION); \
		install -D -m 0644 systemd/org.libvirt.service $(DBUS_ACTIVATION); \
	fi
	install -D -m 0644 doc/vnetd.8 $(DESTDIR)$(PREFIX)/share/man/man8/vnetd.8
	install -D -m 0644 doc/vnetctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/vnetctl.1
	install -D -m 0644 doc/vnetctl.bash $(DESTDIR)/usr/share/bash-completion/completions/vnetctl
	# The D-Bus policy lets group libvirt call org.libvirt, as libvirt-dbus's does.
	if [ -z "$(DESTDIR)" ] && ! getent group libvirt >/dev/null; then groupadd --system libvirt; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/vnetd $(DESTDIR)$(PREFIX)/bin/vnetctl
	rm -f $(DESTDIR)$(PREFIX)/libexec/vnet-bridge-helper $(DESTDIR)$(PREFIX)/libexec/vnet-qemu-ifup $(DESTDIR)$(PREFIX)/libexec/vnet-qemu-ifdown
	rm -f $(DESTDIR)/etc/systemd/system/vnetd.service $(DESTDIR)/usr/lib/tmpfiles.d/vnetd.conf
	rm -f $(DBUS_POLICY)
	if grep -qx '$(DBUS_OURS)' $(DBUS_ACTIVATION) 2>/dev/null; then rm -f $(DBUS_ACTIVATION); fi
	rm -f $(DESTDIR)$(PREFIX)/share/man/man8/vnetd.8 $(DESTDIR)$(PREFIX)/share/man/man1/vnetctl.1
	rm -f $(DESTDIR)/usr/share/bash-completion/completions/vnetctl

# Boots a Debian 12 image (built once with mmdebstrap, cached) with vnet
# installed under QEMU (TCG) with systemd as PID 1 and checks the unit,
# autostart, restarts and the watchdog from inside, then runs the <bandwidth>
# tests on its kernel; prints each stage's time.
test-vm-boot: deps vm-boot

vm-boot:
	VNET_VM_BOOT=1 $(GO) test -count=1 -timeout 40m -v -run '^TestSystemdBootVM$$' ./test/
