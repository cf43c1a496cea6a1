package resubscribe

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestRunResubscribes: a subscription that closes is opened again (with a
// log line and a Resumed call each time), failed re-subscriptions are
// retried, and Run returns nil once ctx is done.
func TestRunResubscribes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	subs, resumed := 0, 0
	var logs []string
	o := Options{What: "test events", Min: time.Millisecond, Max: 4 * time.Millisecond,
		Logger:  slog.New(recorder{&mu, &logs}),
		Resumed: func() { mu.Lock(); resumed++; mu.Unlock() }}
	errDown := errors.New("socket: no buffer space")
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, o, func(ctx context.Context) (func(), error) {
			mu.Lock()
			defer mu.Unlock()
			subs++
			switch {
			case subs == 3:
				return nil, errDown // a failed re-subscription is retried
			case subs < 5:
				return func() {}, nil // closes at once
			}
			return func() { <-ctx.Done() }, nil // stays open
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		s, r := subs, resumed
		mu.Unlock()
		if s == 5 && r == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions, %d resumes; want 5 and 3", s, r)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"event subscription closed; subscribing again": 3, "subscribing to events failed; retrying": 1, "event subscription restored": 3}
	got := map[string]int{}
	for _, l := range logs {
		got[l]++
	}
	for msg, n := range want {
		if got[msg] != n {
			t.Errorf("log %q %d times, want %d (all: %v)", msg, got[msg], n, logs)
		}
	}
}

// TestRunFirstError: without a first subscription there is nothing to keep
// alive: Run returns its error.
func TestRunFirstError(t *testing.T) {
	errNone := errors.New("protocol not supported")
	err := Run(context.Background(), Options{}, func(context.Context) (func(), error) { return nil, errNone })
	if !errors.Is(err, errNone) {
		t.Fatalf("Run = %v, want %v", err, errNone)
	}
}

type recorder struct {
	mu   *sync.Mutex
	msgs *[]string
}

func (r recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	*r.msgs = append(*r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r recorder) WithGroup(string) slog.Handler      { return r }
