package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"vnet/daemon/api"
	"vnet/daemon/client"
)

// eventTypes are the event types net-event knows, as --list prints them.
var eventTypes = []string{"lifecycle"}

// notifyInterrupt delivers SIGINT on the returned channel until stop is
// called. It is a variable so that tests can interrupt without a signal.
var notifyInterrupt = func() (c <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	return ch, func() { signal.Stop(ch) }
}

// eventOpts are net-event's options.
type eventOpts struct {
	loop, list, timestamp bool
	port                  bool // --event port
	warning               bool // --event warning
	timeout               string
}

func (a *app) netEventCmd() *cobra.Command {
	var o eventOpts
	cmd := &cobra.Command{
		Use:                   "net-event {[NETWORK] [[--event] lifecycle] [--loop] [--timeout SECONDS] [--timestamp] | --list}",
		Short:                 "wait for network events and print them, or list the event types",
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			vals, given, err := optArgs(cmd, args, []string{"network", "event"}, 0)
			if err != nil {
				return err
			}
			a.begin()
			if o.list {
				for _, t := range eventTypes {
					fmt.Fprintf(a.stdout, "%s\n", t)
				}
				return nil
			}
			event := "lifecycle"
			if given[1] {
				if vals[1] == "" {
					return emptyOption("event")
				}
				event = vals[1]
			}
			// "port" is vnet's own type (PortCreated, PortDeleted); --list
			// keeps virsh's output and does not show it.
			o.port = event == "port"
			// "warning" is vnet's too: net-doctor's live warnings.
			o.warning = event == "warning"
			if event != "lifecycle" && !o.port && !o.warning {
				return &failure{lines: []string{fmt.Sprintf("unknown event type %s", event)}}
			}
			var timeout time.Duration
			if cmd.Flags().Changed("timeout") {
				s, err := strconv.ParseUint(o.timeout, 10, 32)
				if err != nil {
					return malformedNumber(o.timeout, "timeout")
				}
				if s == 0 || s > maxTimeout {
					return malformedNumber(strconv.FormatUint(s, 10), "timeout")
				}
				timeout = time.Duration(s) * time.Second
			}
			if given[0] && vals[0] == "" {
				return emptyOption("network")
			}
			return a.eventLoop(cmd.Context(), vals[0], timeout, o)
		},
	}
	f := cmd.Flags()
	f.String("network", "", "filter by network name or uuid")
	f.String("event", "", "which event type to wait for (default lifecycle)")
	f.BoolVar(&o.loop, "loop", false, "loop until timeout or interrupt, rather than one-shot")
	f.StringVar(&o.timeout, "timeout", "", "timeout seconds")
	f.BoolVar(&o.list, "list", false, "list valid event types")
	f.BoolVar(&o.timestamp, "timestamp", false, "show timestamp for each printed event")
	return cmd
}

// eventLoop prints the events of network ref (every network when empty)
// until the first one, or with --loop until the timeout or SIGINT, then the
// count. Like virsh it fails, silently, when no event arrived.
func (a *app) eventLoop(ctx context.Context, ref string, timeout time.Duration, o eventOpts) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	interrupted, stop := notifyInterrupt()
	defer stop()

	events, errc := a.client().EventsWith(ctx, ref, o.port || o.warning)
	count := 0
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return a.streamFailed(ref, count, <-errc)
			}
			if o.port != (ev.Port != "") || o.warning != (ev.Event == "Warning") {
				continue
			}
			a.printEvent(ev, o.timestamp)
			count++
			if !o.loop {
				break loop
			}
		case <-expired:
			fmt.Fprint(a.stdout, "event loop timed out\n")
			break loop
		case <-interrupted:
			fmt.Fprint(a.stdout, "event loop interrupted\n")
			break loop
		}
	}
	fmt.Fprintf(a.stdout, "events received: %d\n", count)
	if count == 0 {
		// virsh fails without a message when nothing arrived.
		return &failure{}
	}
	return nil
}

// streamFailed reports the end of the event stream before the loop was
// done: a refused subscription (unknown network, no daemon) as the lookup
// failure it is, a stream cut later after the count so far.
func (a *app) streamFailed(ref string, count int, err error) error {
	var ae *api.Error
	var ce *client.ConnectError
	if errors.As(err, &ae) || errors.As(err, &ce) {
		return failNet(ref, "", err)
	}
	fmt.Fprintf(a.stdout, "events received: %d\n", count)
	return fail("", err)
}

// printEvent prints one event as virsh does; --timestamp prefixes the
// event's time in UTC with milliseconds.
func (a *app) printEvent(ev api.Event, timestamp bool) {
	line := fmt.Sprintf("event 'lifecycle' for network %s: %s\n", ev.Network, ev.Event)
	if ev.Port != "" {
		line = fmt.Sprintf("event 'port' for network %s: %s %s\n", ev.Network, ev.Event, ev.Port)
	}
	if ev.Event == "Warning" {
		line = fmt.Sprintf("event 'warning' for network %s: %s\n", ev.Network, ev.Detail)
	}
	if timestamp {
		t, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil {
			// virsh stamps the moment it prints; do so when the daemon's
			// time is unreadable.
			t = time.Now()
		}
		line = t.UTC().Format("2006-01-02 15:04:05.000") + "+0000: " + line
	}
	fmt.Fprint(a.stdout, line)
}
