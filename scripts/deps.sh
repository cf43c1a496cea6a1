#!/bin/sh
# Installs what vnet needs on Debian 12 when it is missing: dnsmasq, nftables,
# iptables, iproute2, a DHCP client and DNS tools for the tests, dbus for the
# D-Bus tests. Needs root. Safe to run again.
set -eu
need=""
for pair in dnsmasq:dnsmasq-base nft:nftables iptables:iptables ip:iproute2 tc:iproute2 \
            busybox:busybox udhcpc:udhcpc dig:bind9-dnsutils ping:iputils-ping \
            dbus-daemon:dbus make:make; do
	cmd=${pair%%:*}; pkg=${pair#*:}
	if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ]; then
		need="$need $pkg"
	fi
done
# dbus-python for the D-Bus client tests (a frontend's view of the API).
if ! /usr/bin/python3 -c 'import dbus' >/dev/null 2>&1; then
	need="$need python3-dbus"
fi
if [ -n "$need" ]; then
	echo "installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	echo "note: add /usr/local/go/bin to PATH" >&2
fi
