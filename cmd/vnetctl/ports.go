package main

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"vnet/daemon/api"
)

// The net-port-* commands: libvirt's network port API, with virsh's syntax,
// messages and table.

// failPort is fail for a command naming a network and a port: a failed
// network lookup prints "failed to get network 'NET'", a failed port lookup
// "failed to get network port 'PORT'", anything else context.
func failPort(net, port, context string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeNoPort {
		context = fmt.Sprintf("failed to get network port '%s'", port)
	}
	return failNet(net, context, err)
}

// portCmd builds a command whose data options are names, in order.
func (a *app) portCmd(use, short string, names []string, body func(ctx context.Context, vals []string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:                   use,
		Short:                 short,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
	}
	for _, n := range names {
		cmd.Flags().String(n, "", n)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		vals, _, err := optArgs(cmd, args, names, len(names))
		if err != nil {
			return err
		}
		a.begin()
		for i, v := range vals {
			if v == "" {
				return emptyOption(names[i])
			}
		}
		return body(cmd.Context(), vals)
	}
	return cmd
}

func (a *app) netPortCreateCmd() *cobra.Command {
	var validate bool
	cmd := a.portCmd("net-port-create NETWORK FILE [--validate]", "create a network port from an XML file",
		[]string{"network", "file"}, func(ctx context.Context, v []string) error {
			xml, err := readFile(v[1])
			if err != nil {
				return err
			}
			p, err := a.client().CreatePort(ctx, v[0], api.PortRequest{XML: xml, Validate: validate})
			if err != nil {
				// virsh words this failure as a network's.
				return failNet(v[0], "Failed to create network from "+v[1], err)
			}
			a.say("Network port %s created from %s\n", p.UUID, v[1])
			return nil
		})
	cmd.Flags().BoolVar(&validate, "validate", false, "validate the XML against the schema")
	return cmd
}

func (a *app) netPortListCmd() *cobra.Command {
	var table, uuid bool
	cmd := a.portCmd("net-port-list [--table | --uuid] NETWORK", "list the ports of a network",
		[]string{"network"}, func(ctx context.Context, v []string) error {
			if table && uuid {
				return &failure{lines: []string{"Only one argument from --table and --uuid may be specified."}}
			}
			ports, err := a.client().ListPorts(ctx, v[0])
			if err != nil {
				return failNet(v[0], "Failed to list network ports", err)
			}
			sort.Slice(ports, func(i, j int) bool { return ports[i].UUID < ports[j].UUID })
			rows := make([][]string, 0, len(ports))
			for _, p := range ports {
				if uuid {
					fmt.Fprintf(a.stdout, "%s\n", p.UUID)
				}
				rows = append(rows, []string{p.UUID})
			}
			if !uuid {
				writeTable(a.stdout, []string{"UUID"}, rows, a.quiet)
			}
			return nil
		})
	cmd.Flags().BoolVar(&table, "table", false, "list table (default)")
	cmd.Flags().BoolVar(&uuid, "uuid", false, "list UUIDs only")
	return cmd
}

func (a *app) netPortDumpXMLCmd() *cobra.Command {
	return a.portCmd("net-port-dumpxml NETWORK PORT", "print a network port's XML",
		[]string{"network", "port"}, func(ctx context.Context, v []string) error {
			doc, err := a.client().PortXML(ctx, v[0], v[1])
			if err != nil {
				return failPort(v[0], v[1], "", err)
			}
			fmt.Fprint(a.stdout, doc)
			return nil
		})
}

func (a *app) netPortDeleteCmd() *cobra.Command {
	return a.portCmd("net-port-delete NETWORK PORT", "delete a network port (and the TAP vnetd created for it)",
		[]string{"network", "port"}, func(ctx context.Context, v []string) error {
			if _, err := a.client().DeletePort(ctx, v[0], v[1]); err != nil {
				return failPort(v[0], v[1], "Failed to delete network port "+v[1], err)
			}
			a.say("Network port %s deleted\n", v[1])
			return nil
		})
}
