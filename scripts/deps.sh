#!/bin/sh
# Installs on Debian 12 what vnet and its tests use, when it is missing:
#   vnetd at run time: dnsmasq, nftables, iptables (with ip6tables, -save,
#     -restore, -legacy), iproute2 (ip, tc), procps (sysctl); passt for the
#     user-mode networks of vnetd --session;
#   the namespace tests: busybox (udhcpc), bind9-dnsutils (dig), iputils-ping,
#     util-linux (unshare, nsenter, setpriv, runuser), make;
#   the D-Bus tests: dbus-daemon, dbus-bin (dbus-send, dbus-monitor), Debian's
#     system bus policy, python3-dbus (a frontend's view of the API);
#   the overlay tests: frr (zebra, bgpd, vtysh; the tests run their own
#     daemons per namespace, never the host's frr service);
#   the cockpit test (test/cockpit): cockpit-ws, cockpit-bridge, cockpit-system
#     (the shell), chromium, nodejs and npm. cockpit-machines is not installed:
#     it depends on libvirt-daemon-system and libvirt-dbus, which must not run
#     next to vnetd, so the test unpacks the .deb (apt-get download) and fetches
#     playwright-core with npm into test/cockpit/.cache itself.
# Go is not installed here (go.mod says which version; see README).
# Needs root to install; safe to run again: when everything is present it
# only looks (no apt-get update) and takes a few milliseconds.
set -eu

need=""
add() {
	case " $need " in *" $1 "*) ;; *) need="$need $1" ;; esac
}
has() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# command:package
for pair in \
	dnsmasq:dnsmasq-base nft:nftables \
	iptables:iptables ip6tables:iptables iptables-save:iptables iptables-restore:iptables \
	ip6tables-save:iptables ip6tables-restore:iptables iptables-legacy:iptables \
	ip:iproute2 tc:iproute2 sysctl:procps \
	busybox:busybox dig:bind9-dnsutils ping:iputils-ping \
	unshare:util-linux nsenter:util-linux setpriv:util-linux runuser:util-linux mount:mount \
	dbus-daemon:dbus-daemon dbus-send:dbus-bin dbus-monitor:dbus-bin \
	make:make python3:python3 \
	cockpit-bridge:cockpit-bridge chromium:chromium node:nodejs npm:npm \
	passt:passt qemu-system-x86_64:qemu-system-x86 mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs dpkg-deb:dpkg; do
	has "${pair%%:*}" || add "${pair#*:}"
done
# file:package
for pair in \
	/usr/share/dbus-1/system.conf:dbus-system-bus-common \
	/usr/lib/frr/bgpd:frr /usr/bin/vtysh:frr \
	/usr/lib/cockpit/cockpit-ws:cockpit-ws \
	/usr/share/cockpit/shell/manifest.json:cockpit-system; do
	[ -e "${pair%%:*}" ] || add "${pair#*:}"
done
if ! /usr/bin/python3 -c 'import dbus' >/dev/null 2>&1; then
	add python3-dbus
fi

if [ -n "$need" ]; then
	if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
		echo "deps.sh: missing:$need (install them as root with apt-get; the tests that need them skip)" >&2
		exit 0
	fi
	echo "deps.sh: installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends $need >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	echo "note: add /usr/local/go/bin to PATH" >&2
fi
