package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/spf13/cobra"

	"vnet/daemon/api"
)

// updateCommands maps net-update's command names to libvirt's
// virNetworkUpdateCommand values; "add" is virsh's synonym for "add-last".
var updateCommands = map[string]int{
	"modify":    1,
	"delete":    2,
	"add-last":  3,
	"add":       3,
	"add-first": 4,
}

// updateSections maps net-update's section names to libvirt's
// virNetworkUpdateSection values.
var updateSections = map[string]int{
	"bridge":            1,
	"domain":            2,
	"ip":                3,
	"ip-dhcp-host":      4,
	"ip-dhcp-range":     5,
	"forward":           6,
	"forward-interface": 7,
	"forward-pf":        8,
	"portgroup":         9,
	"dns-host":          10,
	"dns-txt":           11,
	"dns-srv":           12,
}

// updateOpts are net-update's options besides the four data arguments.
type updateOpts struct {
	parentIndex           string
	live, config, current bool
}

func (a *app) netUpdateCmd() *cobra.Command {
	var o updateOpts
	data := []string{"network", "command", "section", "xml"}
	cmd := &cobra.Command{
		Use:                   "net-update NETWORK COMMAND SECTION XML [--parent-index N] [[--live] [--config] | [--current]]",
		Short:                 "update a part of a network's live state and/or persistent configuration",
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			vals, _, err := optArgs(cmd, args, data, len(data))
			if err != nil {
				return err
			}
			a.begin()
			return a.update(cmd.Context(), cmd, vals[0], vals[1], vals[2], vals[3], o)
		},
	}
	f := cmd.Flags()
	f.String("network", "", "network name or uuid")
	f.String("command", "", "type of update (add-first, add-last (add), delete, or modify)")
	f.String("section", "", "which section of network configuration to update")
	f.String("xml", "", "name of file containing xml (or, if it starts with '<', the complete xml element itself) to add/modify, or to be matched for search")
	f.StringVar(&o.parentIndex, "parent-index", "", "which parent object to search through")
	f.BoolVar(&o.config, "config", false, "affect next network startup")
	f.BoolVar(&o.live, "live", false, "affect running network")
	f.BoolVar(&o.current, "current", false, "affect current state of network")
	return cmd
}

// update runs net-update, checking in virsh's order: exclusive options, the
// network, command, section, parent index, xml.
func (a *app) update(ctx context.Context, cmd *cobra.Command, ref, command, section, xml string, o updateOpts) error {
	if o.current && o.live {
		return &failure{lines: []string{"Options --current and --live are mutually exclusive"}}
	}
	if o.current && o.config {
		return &failure{lines: []string{"Options --current and --config are mutually exclusive"}}
	}
	if ref == "" {
		return emptyOption("network")
	}
	req, err := updateRequest(cmd, command, section, xml, o)
	if err != nil {
		// virsh has looked the network up before it reads the other
		// arguments, so an unknown network is what it reports first.
		if _, gerr := a.client().Get(ctx, ref, "any"); gerr != nil {
			return failNet(ref, "", gerr)
		}
		return err
	}
	n, err := a.client().Update(ctx, ref, req)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeNoNetwork {
			return failNet(ref, "", err)
		}
		return fail("Failed to update network "+a.networkName(ctx, ref, err), err)
	}
	affected := "persistent config"
	switch {
	case o.config && o.live:
		affected = "persistent config and live state"
	case o.config:
	case o.live, n.Active:
		affected = "live state"
	}
	// No newline of its own: virsh's end-of-command newline ends the line.
	a.say("Updated network %s %s", n.Name, affected)
	return nil
}

// updateRequest checks net-update's command, section, parent index and xml
// arguments and builds the request; XML not starting with '<' names a file.
func updateRequest(cmd *cobra.Command, command, section, xml string, o updateOpts) (api.UpdateRequest, error) {
	req := api.UpdateRequest{ParentIndex: -1, Live: o.live, Config: o.config}
	if command == "" {
		return req, emptyOption("command")
	}
	var ok bool
	if req.Command, ok = updateCommands[command]; !ok {
		return req, &failure{lines: []string{fmt.Sprintf("unrecognized command name '%s'", command)}}
	}
	if section == "" {
		return req, emptyOption("section")
	}
	if req.Section, ok = updateSections[section]; !ok {
		return req, &failure{lines: []string{fmt.Sprintf("unrecognized section name '%s'", section)}}
	}
	if cmd.Flags().Changed("parent-index") {
		i, err := strconv.ParseInt(o.parentIndex, 10, 32)
		if err != nil {
			return req, malformedNumber(o.parentIndex, "parent-index")
		}
		req.ParentIndex = int(i)
	}
	if xml == "" {
		return req, emptyOption("xml")
	}
	if xml[0] != '<' {
		text, err := readFile(xml)
		if err != nil {
			return req, err
		}
		xml = text
	}
	req.XML = xml
	return req, nil
}

// malformedNumber is virsh's failure for a numeric option it cannot parse.
func malformedNumber(value, option string) error {
	return &failure{lines: []string{fmt.Sprintf("Numeric value '%s' for <%s> option is malformed or out of range", value, option)}}
}

// networkName is the name virsh prints in a failure context: the network's
// own name, which the daemon reports with the error, else looked up, else
// ref as typed.
func (a *app) networkName(ctx context.Context, ref string, err error) string {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Network != "" {
		return ae.Network
	}
	if n, gerr := a.client().Get(ctx, ref, "any"); gerr == nil {
		return n.Name
	}
	return ref
}

// maxTimeout is the largest --timeout virsh accepts: seconds that still fit
// an int of milliseconds.
const maxTimeout = math.MaxInt32 / 1000
