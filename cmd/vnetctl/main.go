// Command vnetctl is vnetd's command-line client. It speaks virsh: the
// net-* verbs, their options, messages, tables and exit codes are those of
// `virsh net-*` (libvirt 9.0), byte for byte.
//
// Commands:
//
//	net-define FILE [--validate]       net-create FILE [--validate] [--dry-run]
//	net-undefine NETWORK               net-start NETWORK [--dry-run]
//	net-destroy NETWORK                net-autostart NETWORK [--disable]
//	net-info NETWORK                   net-dumpxml [--inactive] NETWORK
//	net-uuid NETWORK-NAME              net-name NETWORK-UUID
//	net-edit NETWORK
//	net-list [--inactive | --all] [--table | --name | --uuid]
//	         [--persistent] [--transient] [--autostart] [--no-autostart]
//	net-update NETWORK COMMAND SECTION XML [--parent-index N]
//	         [[--live] [--config] | [--current]]
//	net-dhcp-leases NETWORK [[--mac] MAC] [--json]
//	net-event {[NETWORK] [[--event] lifecycle] [--loop] [--timeout S] [--timestamp] | --list}
//	net-doctor [NETWORK] [--json]
//	net-port-attach NETWORK PORT [--fd N] -- COMMAND [ARG]...
//
// Global options: --socket PATH (default $VNET_SOCKET, else
// /run/vnet/vnetd.sock) and -q/--quiet. As in virsh, the data argument may
// also be given as --network NAME or --file FILE.
//
// Additions to virsh: --dry-run on net-start and net-create prints the host
// changes the daemon would make (commands, dnsmasq argv and files) and makes
// none; net-dhcp-leases --json prints the leases as a JSON array;
// net-doctor says what around a network breaks its guests (PROBLEM lines
// with fixes, exit status 1 when there are problems); net-event --event
// port|warning shows vnet's port and net-doctor's live warning events;
// net-port-attach runs a command (QEMU with -netdev
// stream,addr.type=fd,addr.str=3) with a connection to the passt socket of a
// port of a user-mode network as descriptor 3.
//
// Differences from virsh: net-event waits for lifecycle events when no event
// type is given (virsh insists on one) and accepts the network and event
// type positionally; net-edit does not offer to re-edit after a
// rejected definition (there may be no terminal): it prints the error, keeps
// the edited file, names it and exits 1. Global options are accepted after
// the command name too, and a single-dash argument ("-x") is an option
// error rather than a positional value (use "--" before such a name).
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
