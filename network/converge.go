package network

import (
	"strings"
)

// Step is one change to the host that a converge function decided on: what
// it found (Problem), the change as the command line an admin would type for
// it (Cmd, e.g. `ip link set virbr5 up`, `sysctl -w net.ipv4.ip_forward=1`),
// and the function that makes it. The same Step is executed on a start,
// an adoption or a repair and printed by --dry-run, so the plan and the
// action cannot disagree.
type Step struct {
	// Problem is what differs, e.g. `bridge "virbr5": is down`; "" for a
	// step that only completes another (the rest of a new bridge's setup).
	Problem string
	// Cmd is the change as a command line.
	Cmd string
	// Detail is extra text a dry-run prints below Cmd (rules, file contents).
	Detail string
	// Global marks a change of host-wide state that outlives the network
	// (a forwarding sysctl): callers log it so an admin can find who made it.
	Global bool
	// Do makes the change.
	Do func() error
}

// Executor carries out the steps a converge function decided on, or only
// records them. Converge functions read the live state themselves (read-only)
// and issue every change through the executor.
type Executor interface {
	// Run carries out (or records) one step.
	Run(Step) error
	// Live reports whether steps change the host. When false, a converge
	// function must predict a step's effect (a bridge it would create)
	// instead of reading it back.
	Live() bool
}

// Apply is the executor that changes the host. It keeps the steps it ran, in
// order, so callers can report and log them and tests can compare them with
// a dry run.
type Apply struct {
	// Ran lists the steps that succeeded.
	Ran []Step
	// OnStep, when set, is called after each step that succeeded.
	OnStep func(Step)
	// Pass, when set, is the snapshot of a check of every network that
	// the converge functions read instead of asking the kernel per network.
	Pass *Snapshot
}

func (a *Apply) snapshot() *Snapshot { return a.Pass }

// Run implements Executor.
func (a *Apply) Run(s Step) error {
	if err := s.Do(); err != nil {
		return err
	}
	a.Ran = append(a.Ran, s)
	if a.OnStep != nil {
		a.OnStep(s)
	}
	return nil
}

// Live implements Executor.
func (a *Apply) Live() bool { return true }

// Record is the executor of --dry-run and of verification: it records every
// step and changes nothing.
type Record struct {
	// Steps lists the steps that would run, in order.
	Steps []Step
	// Pass is as in Apply.
	Pass *Snapshot
}

func (r *Record) snapshot() *Snapshot { return r.Pass }

// Run implements Executor.
func (r *Record) Run(s Step) error {
	r.Steps = append(r.Steps, s)
	return nil
}

// Live implements Executor.
func (r *Record) Live() bool { return false }

// Problems returns the Problem of every step that has one.
func Problems(steps []Step) []string {
	var out []string
	for _, s := range steps {
		if s.Problem != "" {
			out = append(out, s.Problem)
		}
	}
	return out
}

// Commands returns the command lines of the steps, one a line, each followed
// by its Detail.
func Commands(steps []Step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.Cmd)
		b.WriteByte('\n')
		if s.Detail != "" {
			b.WriteString(s.Detail)
			if !strings.HasSuffix(s.Detail, "\n") {
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}
