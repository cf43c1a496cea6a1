package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"vnet/daemon/api"
	"vnet/daemon/client"
)

// app is one invocation of vnetctl: global flags, output streams and the
// bookkeeping for virsh's end-of-command empty line.
type app struct {
	stdout, stderr io.Writer
	socket         string
	quiet          bool
	// ran is set once a command got past argument parsing. virsh writes the
	// end-of-command empty line only for commands it ran, successful or not,
	// never after an argument parsing error.
	ran bool
	cli *client.Client
}

// usageError is an argument parsing error: virsh prints it as one line and
// runs nothing, so no end-of-command empty line follows.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// failure is a failed command, printed on stderr one "error: " line per entry.
type failure struct{ lines []string }

func (e *failure) Error() string { return strings.Join(e.lines, "\n") }

// run executes vnetctl with args (without the program name), writing to
// stdout and stderr, and returns the exit status: 0 on success, 1 on failure.
func run(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(context.Background())
	status := 0
	var quiet *exitStatus
	if errors.As(err, &quiet) {
		status, err = quiet.code, nil
	}
	if err != nil {
		status = 1
		var f *failure
		if errors.As(err, &f) {
			for _, l := range f.lines {
				fmt.Fprintf(stderr, "error: %s\n", l)
			}
		} else {
			fmt.Fprintf(stderr, "error: %s\n", err)
		}
	}
	if a.ran && !a.quiet {
		fmt.Fprint(stdout, "\n")
	}
	return status
}

// rootCmd builds the command tree.
func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vnetctl [-q] [--socket PATH] COMMAND [ARG]...",
		Short: "Manage vnetd virtual networks with virsh's net-* commands",
		Long: "vnetctl controls vnetd, a libvirt-compatible virtual network daemon.\n" +
			"Its net-* commands take the same arguments and print the same text as virsh's.",
		SilenceErrors: true,
		SilenceUsage:  true,
		// Args is set so that cobra hands unknown command names to RunE
		// instead of failing with its own wording.
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command: '%s'", args[0])
			}
			return cmd.Help()
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(flagError)
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", client.DefaultSocket(), "vnetd API socket (env "+client.SocketEnv+")")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "quiet mode: no success messages, table headers or empty lines")

	root.AddCommand(
		a.netDefineCmd(), a.netCreateCmd(), a.netUndefineCmd(),
		a.netStartCmd(), a.netDestroyCmd(),
		a.netListCmd(), a.netInfoCmd(), a.netDumpXMLCmd(),
		a.netAutostartCmd(), a.netUUIDCmd(), a.netNameCmd(), a.netEditCmd(),
		a.netUpdateCmd(), a.netDHCPLeasesCmd(), a.netEventCmd(),
		a.netPortCreateCmd(), a.netPortListCmd(), a.netPortDumpXMLCmd(), a.netPortDeleteCmd(), a.netPortAttachCmd(),
		a.netDoctorCmd(),
	)
	return root
}

// flagError rewrites pflag's parse errors into virsh's wording.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unknown flag: "):
		return usagef("command '%s' doesn't support option %s", cmd.Name(), strings.TrimPrefix(msg, "unknown flag: "))
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// "unknown shorthand flag: 'x' in -x"
		opt := msg[strings.LastIndex(msg, " ")+1:]
		return usagef("command '%s' doesn't support option %s", cmd.Name(), opt)
	case strings.HasPrefix(msg, "flag needs an argument: "):
		opt := strings.TrimPrefix(msg, "flag needs an argument: ")
		if strings.HasPrefix(opt, "'") {
			// "flag needs an argument: 'x' in -x"
			opt = opt[strings.LastIndex(opt, " ")+1:]
		}
		return usagef("expected syntax: %s <string>", opt)
	}
	return usagef("%s", msg)
}

// client returns the API client, created on first use.
func (a *app) client() *client.Client {
	if a.cli == nil {
		a.cli = client.New(a.socket)
	}
	return a.cli
}

// begin marks the command as run (argument parsing is over).
func (a *app) begin() { a.ran = true }

// say prints a success message unless --quiet.
func (a *app) say(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.stdout, format, args...)
	}
}

// fail builds the failure for err: virsh's context line (when not empty)
// followed by the daemon's message. A daemon that cannot be reached gives
// virsh's connection failure instead.
func fail(context string, err error) error {
	var ce *client.ConnectError
	if errors.As(err, &ce) {
		return &failure{lines: []string{"failed to connect to the hypervisor", connectDetail(ce)}}
	}
	msg := err.Error()
	var ae *api.Error
	if errors.As(err, &ae) {
		msg = ae.Message
	}
	if context == "" {
		return &failure{lines: []string{msg}}
	}
	return &failure{lines: []string{context, msg}}
}

// failNet is fail for a command whose argument names a network: a failed
// lookup prints virsh's "failed to get network 'ARG'" instead of context.
func failNet(arg, context string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeNoNetwork {
		context = fmt.Sprintf("failed to get network '%s'", arg)
	}
	return fail(context, err)
}

// connectDetail words a dial failure like libvirt's
// "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory".
func connectDetail(ce *client.ConnectError) string {
	var errno syscall.Errno
	if errors.As(ce.Err, &errno) {
		return fmt.Sprintf("Failed to connect socket to '%s': %s", ce.Socket, strerror(errno))
	}
	return fmt.Sprintf("Failed to connect socket to '%s': %v", ce.Socket, ce.Err)
}

// strerror returns the C library's text for errno: Go's table has the same
// words in lower case ("no such file or directory").
func strerror(errno syscall.Errno) string {
	s := errno.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
