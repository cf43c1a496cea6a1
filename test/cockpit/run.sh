#!/usr/bin/env bash
# Manual check of vnetd's D-Bus front door as cockpit-machines uses it: a
# private system-like bus, vnetd in a throwaway network namespace, cockpit-ws
# on loopback without login, and headless Chromium driven by playwright-core
# through the Networks page. See README.md. Needs root and Debian 12 packages.
#
# Environment: PORT (cockpit-ws port on 127.0.0.1, default 9090),
# OUT (screenshots and logs, default a fresh dir under /tmp, printed at the end),
# KEEP_OPEN=1 (leave everything running after the script until Enter is pressed).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PORT=${PORT:-9090}

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root (network namespace, vnetd)" >&2
	exit 1
fi

# --- packages -----------------------------------------------------------------
# cockpit-machines itself is only static files, but its Depends pull in
# libvirt-daemon-system and libvirt-dbus, which must not run next to vnetd (only
# one process may own org.libvirt). So it is downloaded and unpacked into the
# temp dir, not installed.
need=()
[ -x /usr/lib/cockpit/cockpit-ws ] || need+=(cockpit-ws)
[ -d /usr/share/cockpit/shell ] || need+=(cockpit-system)
command -v cockpit-bridge >/dev/null || need+=(cockpit-bridge)
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "run.sh: needs Go to build vnetd" >&2; exit 1; }
if [ ${#need[@]} -gt 0 ]; then
	echo "run.sh: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
GO=$(command -v go || echo /usr/local/go/bin/go)
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	echo "run.sh: 127.0.0.1:$PORT is in use; set PORT" >&2
	exit 1
fi

# --- temp dirs, namespace, cleanup ---------------------------------------------
D=$(mktemp -d /tmp/vnt-cockpit.XXXXXX)
NS=vnt-cockpit-$(basename "$D" | cut -d. -f2 | tr 'A-Z' 'a-z')
OUT=${OUT:-$D-out}
chmod 755 "$D" # dnsmasq runs as nobody and must reach its hosts files
mkdir -p "$OUT" "$D/etc" "$D/lib" "$D/run" "$D/home" "$D/xdg" "$D/node"
PIDS=()

cleanup() {
	local rc=$?
	set +e
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill "${PIDS[i]}" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	if ip netns list | awk '{print $1}' | grep -qx "$NS"; then
		# Whatever vnetd left (dnsmasq) dies with the namespace's processes.
		for p in $(ip netns pids "$NS"); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$NS"
	fi
	rm -rf "$D"
	echo "run.sh: cleaned up (namespace $NS, $D); screenshots and logs in $OUT"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "run.sh: building vnetd"
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$D/vnetd" ./cmd/vnetd)

echo "run.sh: fetching cockpit-machines (unpacked, not installed)"
(cd "$D" && apt-get download -qq cockpit-machines 2>/dev/null || { apt-get update -qq && apt-get download -qq cockpit-machines; })
dpkg-deb -x "$D"/cockpit-machines_*.deb "$D/pkg"
mkdir -p "$D/xdg/cockpit"
mv "$D/pkg/usr/share/cockpit/machines" "$D/xdg/cockpit/machines"

echo "run.sh: installing playwright-core into $D/node"
(cd "$D/node" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund playwright-core >/dev/null 2>&1)

# --- private system bus -----------------------------------------------------------
# A bus like the system bus, on a socket file (reachable from inside the
# namespace, unlike an abstract socket) with Debian's system-bus policy (taken
# from /usr/share/dbus-1/system.conf: method calls and name ownership denied by
# default, root may monitor) plus vnet's own policy file, the one `make install`
# puts into system.d. So cockpit reaches vnetd only through the holes vnet ships.
{
	echo '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"'
	echo ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">'
	echo '<busconfig>'
	echo '  <type>system</type>'
	echo "  <listen>unix:path=$D/system_bus_socket</listen>"
	echo '  <auth>EXTERNAL</auth>'
	sed -n '/<policy context="default">/,/^  <!-- Include legacy/p' /usr/share/dbus-1/system.conf | sed '$d'
	echo "  <include>$ROOT/systemd/org.libvirt.conf</include>"
	echo '</busconfig>'
} >"$D/bus.conf"
grep -q '<deny send_type="method_call"/>' "$D/bus.conf" || { echo "run.sh: could not take the default policy from /usr/share/dbus-1/system.conf" >&2; exit 1; }
dbus-daemon --config-file="$D/bus.conf" --nofork --nopidfile >"$OUT/dbus-daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$D/system_bus_socket" ] && break; sleep 0.1; done
BUS="unix:path=$D/system_bus_socket"
export DBUS_SYSTEM_BUS_ADDRESS=$BUS
# Every message to and from org.libvirt, for the report.
dbus-monitor --address "$BUS" "destination='org.libvirt'" "sender='org.libvirt'" >"$OUT/dbus-monitor.log" 2>&1 &
PIDS+=($!)

# A session bus of our own too: without DBUS_SESSION_BUS_ADDRESS, cockpit-bridge
# launches one that outlives it.
dbus-daemon --session --address="unix:path=$D/session_bus_socket" --nofork --nopidfile >"$OUT/dbus-session.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$D/session_bus_socket" ] && break; sleep 0.1; done
export DBUS_SESSION_BUS_ADDRESS="unix:path=$D/session_bus_socket"

# --- vnetd in its own namespace -----------------------------------------------------
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" "$D/vnetd" --verbose --config-dir "$D/etc" --state-dir "$D/lib" --run-dir "$D/run" \
	--dbus "$BUS" >"$OUT/vnetd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'serving D-Bus' "$OUT/vnetd.log" && break; sleep 0.1; done
grep -q 'serving D-Bus' "$OUT/vnetd.log" || { echo "run.sh: vnetd did not take org.libvirt" >&2; cat "$OUT/vnetd.log" >&2; exit 1; }

# The policy is really in force: a user outside root and group libvirt is refused
# by the bus (no dbus-daemon of ours would care otherwise).
if runuser -u nobody -- dbus-send --system --print-reply --dest=org.libvirt /org/libvirt/QEMU \
	org.libvirt.Connect.ListNetworks uint32:0 >"$OUT/policy-check.log" 2>&1; then
	echo "run.sh: user nobody could call org.libvirt; the bus policy is not in force" >&2
	exit 1
fi
grep -q AccessDenied "$OUT/policy-check.log" || { echo "run.sh: policy check failed oddly" >&2; cat "$OUT/policy-check.log" >&2; exit 1; }
echo "run.sh: bus policy in force (user nobody: AccessDenied; root: allowed)"

# --- cockpit-ws on loopback, no TLS, no login ---------------------------------------
# The bridge inherits DBUS_SYSTEM_BUS_ADDRESS (our bus) and XDG_DATA_DIRS (finds
# the unpacked machines package first).
env HOME="$D/home" XDG_DATA_DIRS="$D/xdg:/usr/local/share:/usr/share" \
	/usr/lib/cockpit/cockpit-ws --no-tls --address 127.0.0.1 --port "$PORT" \
	--local-session=cockpit-bridge >"$OUT/cockpit-ws.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { echo "run.sh: cockpit-ws did not listen" >&2; cat "$OUT/cockpit-ws.log" >&2; exit 1; }

if [ "${KEEP_OPEN:-}" = 1 ]; then
	echo "run.sh: cockpit at http://127.0.0.1:$PORT/machines#/networks ; bus $BUS ; press Enter to stop"
	read -r _
	exit 0
fi

# --- the browser ---------------------------------------------------------------------
echo "run.sh: driving cockpit-machines"
set +e
NODE_PATH="$D/node/node_modules" node "$HERE/networks.cjs" "http://127.0.0.1:$PORT" "$OUT" "$D/chrome-profile" "$D" 2>&1 | tee "$OUT/playwright.log"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
