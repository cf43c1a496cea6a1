package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"vnet/daemon/api"
)

// leaseZone is the zone lease expiry times are shown in: the local one, as
// in virsh. A variable so that tests get the same text on any host.
var leaseZone = time.Local

func (a *app) netDHCPLeasesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:                   "net-dhcp-leases NETWORK [[--mac] MAC] [--json]",
		Short:                 "print the DHCP leases of a network",
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			vals, given, err := optArgs(cmd, args, []string{"network", "mac"}, 1)
			if err != nil {
				return err
			}
			a.begin()
			return a.leases(cmd.Context(), vals[0], vals[1], given[1], asJSON)
		},
	}
	cmd.Flags().String("network", "", "network name or uuid")
	cmd.Flags().String("mac", "", "MAC address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the leases as a JSON array")
	return cmd
}

// leases runs net-dhcp-leases; like virsh it checks --mac before the network.
func (a *app) leases(ctx context.Context, ref, mac string, macGiven, asJSON bool) error {
	if macGiven && mac == "" {
		return emptyOption("mac")
	}
	if ref == "" {
		return emptyOption("network")
	}
	leases, err := a.client().Leases(ctx, ref, mac)
	if err != nil {
		return failNet(ref, "Failed to get leases info for "+ref, err)
	}
	sortLeases(leases)
	if asJSON {
		return writeLeasesJSON(a.stdout, leases)
	}
	writeLeaseTable(a.stdout, leases, a.quiet)
	return nil
}

// sortLeases orders leases by MAC address, case-insensitively, as virsh
// does; a lease without a MAC sorts last. The sort is stable so that
// several leases of one MAC (IPv4 and IPv6) keep the daemon's order.
func sortLeases(leases []api.Lease) {
	sort.SliceStable(leases, func(i, j int) bool {
		a, b := leases[i].MAC, leases[j].MAC
		if a == "" || b == "" {
			return a != "" && b == ""
		}
		return asciiLower(a) < asciiLower(b)
	})
}

// writeLeaseTable prints net-dhcp-leases' table: expiry in local time, the
// address with its prefix length, "-" for what a lease lacks.
func writeLeaseTable(w io.Writer, leases []api.Lease, quiet bool) {
	rows := make([][]string, 0, len(leases))
	for _, l := range leases {
		rows = append(rows, []string{
			time.Unix(l.ExpiryTime, 0).In(leaseZone).Format("2006-01-02 15:04:05"),
			orDash(l.MAC),
			orDash(l.Protocol),
			l.IPAddr + "/" + strconv.Itoa(l.Prefix),
			orDash(l.Hostname),
			orDash(l.ClientID),
		})
	}
	writeTable(w, []string{"Expiry Time", "MAC address", "Protocol", "IP address", "Hostname", "Client ID or DUID"}, rows, quiet)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeLeasesJSON prints leases as an indented JSON array ("[]" for none),
// with api.Lease's field names.
func writeLeasesJSON(w io.Writer, leases []api.Lease) error {
	if leases == nil {
		leases = []api.Lease{}
	}
	data, err := json.MarshalIndent(leases, "", "  ")
	if err != nil {
		return &failure{lines: []string{fmt.Sprintf("internal error: encode leases: %v", err)}}
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}
