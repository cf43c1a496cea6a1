package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"vnet/daemon/api"
)

// dataCmd builds a command taking one data option, opt ("network" or "file"),
// given positionally or as --opt VALUE as virsh allows. body runs once the
// arguments are parsed.
func (a *app) dataCmd(use, short, opt, optHelp string, body func(ctx context.Context, cmd *cobra.Command, arg string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:                   use,
		Short:                 short,
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
	}
	cmd.Flags().String(opt, "", optHelp)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		arg, err := dataArg(cmd, args, opt)
		if err != nil {
			return err
		}
		a.begin()
		if arg == "" {
			return &failure{lines: []string{fmt.Sprintf("Failed to get option '%s': Option argument is empty", opt)}}
		}
		return body(cmd.Context(), cmd, arg)
	}
	return cmd
}

// dataArg returns the value of cmd's data option opt from --opt or from the
// first positional argument, with virsh's parse errors.
func dataArg(cmd *cobra.Command, args []string, opt string) (string, error) {
	v, _ := cmd.Flags().GetString(opt)
	rest := args
	if !cmd.Flags().Changed(opt) {
		if len(rest) == 0 {
			return "", usagef("command '%s' requires <%s> option", cmd.Name(), opt)
		}
		v, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", usagef("unexpected data '%s'", rest[0])
	}
	return v, nil
}

// optArgs returns the values of cmd's string options names, each from
// --name VALUE or else from the next positional argument, in order, the way
// virsh fills its data options. The first nreq names are required. given
// tells which options were present at all (an empty value is present).
func optArgs(cmd *cobra.Command, args []string, names []string, nreq int) (vals []string, given []bool, err error) {
	vals = make([]string, len(names))
	given = make([]bool, len(names))
	rest := args
	for i, name := range names {
		if cmd.Flags().Changed(name) {
			vals[i], _ = cmd.Flags().GetString(name)
			given[i] = true
			continue
		}
		if len(rest) > 0 {
			vals[i], rest, given[i] = rest[0], rest[1:], true
			continue
		}
		if i < nreq {
			return nil, nil, usagef("command '%s' requires <%s> option", cmd.Name(), name)
		}
	}
	if len(rest) > 0 {
		return nil, nil, usagef("unexpected data '%s'", rest[0])
	}
	return vals, given, nil
}

// emptyOption is virsh's failure for an option given an empty value.
func emptyOption(name string) error {
	return &failure{lines: []string{fmt.Sprintf("Failed to get option '%s': Option argument is empty", name)}}
}

// readFile reads FILE for net-define/net-create with libvirt's messages.
func readFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &failure{lines: []string{fmt.Sprintf("Failed to open file '%s': %s", path, errText(err))}}
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return "", &failure{lines: []string{fmt.Sprintf("Failed to read file '%s': %s", path, errText(err))}}
	}
	return string(data), nil
}

// errText is strerror for a file error, else the error's own text.
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return strerror(errno)
	}
	return err.Error()
}

func (a *app) netDefineCmd() *cobra.Command {
	var validate bool
	cmd := a.dataCmd("net-define FILE [--validate]",
		"define a persistent network, or modify an existing definition, from an XML file",
		"file", "file containing an XML network description",
		func(ctx context.Context, _ *cobra.Command, file string) error {
			xml, err := readFile(file)
			if err != nil {
				return err
			}
			n, err := a.client().DefineWith(ctx, api.DefineRequest{XML: xml, Validate: validate})
			if err != nil {
				return fail("Failed to define network from "+file, err)
			}
			a.say("Network %s defined from %s\n", n.Name, file)
			return nil
		})
	cmd.Flags().BoolVar(&validate, "validate", false, "validate the XML against the schema")
	return cmd
}

func (a *app) netCreateCmd() *cobra.Command {
	var validate, dryRun bool
	cmd := a.dataCmd("net-create FILE [--validate] [--dry-run]",
		"create and start a transient network from an XML file",
		"file", "file containing an XML network description",
		func(ctx context.Context, _ *cobra.Command, file string) error {
			xml, err := readFile(file)
			if err != nil {
				return err
			}
			req := api.DefineRequest{XML: xml, Validate: validate}
			if dryRun {
				plan, err := a.client().DryRunCreateWith(ctx, req)
				if err != nil {
					return fail("Failed to create network from "+file, err)
				}
				fmt.Fprint(a.stdout, plan.Text)
				return nil
			}
			n, err := a.client().CreateWith(ctx, req)
			if err != nil {
				return fail("Failed to create network from "+file, err)
			}
			a.say("Network %s created from %s\n", n.Name, file)
			return nil
		})
	cmd.Flags().BoolVar(&validate, "validate", false, "validate the XML against the schema")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the host changes it would make, and make none")
	return cmd
}

// netVerb builds net-destroy and net-undefine: one call, one
// message. virsh names the network as typed in both the message and the error.
func (a *app) netVerb(name, short string, call func(ctx context.Context, ref string) (api.Network, error), failed, done string) *cobra.Command {
	return a.dataCmd(name+" NETWORK", short, "network", "network name or uuid",
		func(ctx context.Context, _ *cobra.Command, ref string) error {
			if _, err := call(ctx, ref); err != nil {
				return failNet(ref, fmt.Sprintf(failed, ref), err)
			}
			a.say(done, ref)
			return nil
		})
}

func (a *app) netStartCmd() *cobra.Command {
	var dryRun bool
	cmd := a.dataCmd("net-start NETWORK [--dry-run]", "start a (previously defined) inactive network",
		"network", "network name or uuid",
		func(ctx context.Context, _ *cobra.Command, ref string) error {
			if dryRun {
				plan, err := a.client().DryRunStart(ctx, ref)
				if err != nil {
					return failNet(ref, "Failed to start network "+ref, err)
				}
				fmt.Fprint(a.stdout, plan.Text)
				return nil
			}
			if _, err := a.client().Start(ctx, ref); err != nil {
				return failNet(ref, "Failed to start network "+ref, err)
			}
			a.say("Network %s started\n", ref)
			return nil
		})
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the host changes it would make, and make none")
	return cmd
}

func (a *app) netDestroyCmd() *cobra.Command {
	return a.netVerb("net-destroy", "stop a network; a transient one disappears",
		func(ctx context.Context, ref string) (api.Network, error) { return a.client().Destroy(ctx, ref) },
		"Failed to destroy network %s", "Network %s destroyed\n")
}

func (a *app) netUndefineCmd() *cobra.Command {
	return a.netVerb("net-undefine", "undefine a persistent network; an active one keeps running as transient",
		func(ctx context.Context, ref string) (api.Network, error) { return a.client().Undefine(ctx, ref) },
		"Failed to undefine network %s", "Network %s has been undefined\n")
}

func (a *app) netAutostartCmd() *cobra.Command {
	var disable bool
	cmd := a.dataCmd("net-autostart NETWORK [--disable]", "start a network when vnetd starts",
		"network", "network name or uuid",
		func(ctx context.Context, _ *cobra.Command, ref string) error {
			if _, err := a.client().SetAutostart(ctx, ref, !disable); err != nil {
				if disable {
					return failNet(ref, fmt.Sprintf("failed to unmark network %s as autostarted", ref), err)
				}
				return failNet(ref, fmt.Sprintf("failed to mark network %s as autostarted", ref), err)
			}
			if disable {
				a.say("Network %s unmarked as autostarted\n", ref)
			} else {
				a.say("Network %s marked as autostarted\n", ref)
			}
			return nil
		})
	cmd.Flags().BoolVar(&disable, "disable", false, "disable autostarting")
	return cmd
}

func (a *app) netInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := a.dataCmd("net-info NETWORK [--json]", "show basic information about a network",
		"network", "network name or uuid",
		func(ctx context.Context, _ *cobra.Command, ref string) error {
			n, err := a.client().Get(ctx, ref, "any")
			if err != nil {
				return failNet(ref, "", err)
			}
			if asJSON {
				data, err := json.MarshalIndent(n, "", "  ")
				if err != nil {
					return &failure{lines: []string{fmt.Sprintf("internal error: encode network: %v", err)}}
				}
				_, err = fmt.Fprintf(a.stdout, "%s\n", data)
				return err
			}
			writeInfo(a.stdout, n)
			return nil
		})
	// vnet's own: the summary as JSON, with an overlay's full state
	// (every peer, remote VTEP and remote MAC).
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the network's summary (and overlay state) as JSON")
	return cmd
}

func (a *app) netDumpXMLCmd() *cobra.Command {
	var inactive bool
	cmd := a.dataCmd("net-dumpxml [--inactive] NETWORK", "print a network's XML",
		"network", "network name or uuid",
		func(ctx context.Context, _ *cobra.Command, ref string) error {
			doc, err := a.client().XML(ctx, ref, inactive)
			if err != nil {
				return failNet(ref, "", err)
			}
			fmt.Fprint(a.stdout, doc)
			return nil
		})
	cmd.Flags().BoolVar(&inactive, "inactive", false, "the persistent configuration rather than the live one")
	return cmd
}

func (a *app) netUUIDCmd() *cobra.Command {
	return a.dataCmd("net-uuid NETWORK-NAME", "print a network's UUID",
		"network", "network name",
		func(ctx context.Context, _ *cobra.Command, name string) error {
			n, err := a.client().Get(ctx, name, "name")
			if err != nil {
				return failNet(name, "", err)
			}
			fmt.Fprintf(a.stdout, "%s\n", n.UUID)
			return nil
		})
}

// uuidLen is the length of a UUID's text form.
const uuidLen = 36

func (a *app) netNameCmd() *cobra.Command {
	return a.dataCmd("net-name NETWORK-UUID", "print the name of the network with a UUID",
		"network", "network uuid",
		func(ctx context.Context, _ *cobra.Command, uuid string) error {
			if len(uuid) != uuidLen {
				// virsh does not even ask libvirt for something that cannot
				// be a UUID, so there is no second line.
				return &failure{lines: []string{fmt.Sprintf("failed to get network '%s'", uuid)}}
			}
			n, err := a.client().Get(ctx, uuid, "uuid")
			if err != nil {
				return failNet(uuid, "", err)
			}
			fmt.Fprintf(a.stdout, "%s\n", n.Name)
			return nil
		})
}

// listOpts are net-list's options.
type listOpts struct {
	all, inactive          bool
	persistent, transient  bool
	autostart, noAutostart bool
	name, uuid, table      bool
}

func (a *app) netListCmd() *cobra.Command {
	var o listOpts
	cmd := &cobra.Command{
		Use:                   "net-list [--inactive | --all] [--table | --name | --uuid] [--persistent] [--transient] [--autostart] [--no-autostart]",
		Short:                 "list networks",
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected data '%s'", args[0])
			}
			a.begin()
			if btoi(o.name)+btoi(o.uuid)+btoi(o.table) > 1 {
				return &failure{lines: []string{"Only one argument from --table, --name and --uuid may be specified."}}
			}
			nets, err := a.client().List(cmd.Context())
			if err != nil {
				return fail("Failed to list networks", err)
			}
			nets = filterNetworks(nets, o)
			switch {
			case o.name:
				for _, n := range nets {
					fmt.Fprintf(a.stdout, "%s\n", n.Name)
				}
			case o.uuid:
				for _, n := range nets {
					fmt.Fprintf(a.stdout, "%s\n", n.UUID)
				}
			default:
				writeNetTable(a.stdout, nets, a.quiet)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.inactive, "inactive", false, "list inactive networks")
	f.BoolVar(&o.all, "all", false, "list inactive & active networks")
	f.BoolVar(&o.persistent, "persistent", false, "list persistent networks")
	f.BoolVar(&o.transient, "transient", false, "list transient networks")
	f.BoolVar(&o.autostart, "autostart", false, "list networks with autostart enabled")
	f.BoolVar(&o.noAutostart, "no-autostart", false, "list networks with autostart disabled")
	f.BoolVar(&o.name, "name", false, "list network names only")
	f.BoolVar(&o.uuid, "uuid", false, "list UUIDs only")
	f.BoolVar(&o.table, "table", false, "list table (default)")
	return cmd
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
