// Package resubscribe keeps a kernel event subscription (netlink, the
// nftables monitor) alive: when the kernel or the library closes it, it is
// opened again after a short backoff and the loss is logged, so drift repair
// never silently falls back to its periodic check.
package resubscribe

import (
	"context"
	"log/slog"
	"time"
)

// Defaults of Options.
const (
	DefaultMin    = 50 * time.Millisecond
	DefaultMax    = 5 * time.Second
	DefaultStable = time.Minute
)

// Options configure Run.
type Options struct {
	// What names the subscription in logs ("netlink events").
	What string
	// Logger receives a warning per lost subscription; nil discards.
	Logger *slog.Logger
	// Min and Max bound the wait before subscribing again: Min doubling up
	// to Max, back to Min after a subscription that lasted Stable.
	Min, Max, Stable time.Duration
	// Resumed is called after every re-subscription: events of the gap are
	// lost, so the caller checks everything.
	Resumed func()
}

// Subscribe opens a subscription and returns consume, which delivers its
// events until the subscription closes or ctx is done, and releases it.
type Subscribe func(ctx context.Context) (consume func(), err error)

// Run subscribes and consumes until ctx is done, subscribing again whenever
// the subscription closes. The first subscription's error is returned (the
// host has no such events at all); later errors are logged and retried.
func Run(ctx context.Context, o Options, subscribe Subscribe) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Min = orDefault(o.Min, DefaultMin)
	o.Max = orDefault(o.Max, DefaultMax)
	o.Stable = orDefault(o.Stable, DefaultStable)
	consume, err := subscribe(ctx)
	if err != nil {
		return err
	}
	wait := o.Min
	for {
		start := time.Now()
		consume()
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) >= o.Stable {
			wait = o.Min
		}
		o.Logger.Warn("event subscription closed; subscribing again", "events", o.What, "retry_in", wait)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = min(2*wait, o.Max)
			if consume, err = subscribe(ctx); err == nil {
				break
			}
			o.Logger.Warn("subscribing to events failed; retrying", "events", o.What, "err", err, "retry_in", wait)
		}
		o.Logger.Info("event subscription restored", "events", o.What)
		if o.Resumed != nil {
			o.Resumed()
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
