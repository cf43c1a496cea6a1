package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
)

// netEditCmd is virsh's net-edit: the persistent XML goes to a temp file,
// $VISUAL, $EDITOR or vi edits it, and a changed file is defined.
//
// Where virsh asks "Failed. Try again? [y,n,i,f,?]" after a rejected
// definition, vnetctl may have no terminal to ask on: it prints the error
// (as net-define would), keeps the edited file and names it so nothing typed
// is lost, and exits 1.
func (a *app) netEditCmd() *cobra.Command {
	return a.dataCmd("net-edit NETWORK", "edit a network's XML configuration in $VISUAL or $EDITOR",
		"network", "network name or uuid",
		func(ctx context.Context, _ *cobra.Command, ref string) error {
			return a.edit(ctx, ref)
		})
}

func (a *app) edit(ctx context.Context, ref string) error {
	c := a.client()
	n, err := c.Get(ctx, ref, "any")
	if err != nil {
		return failNet(ref, "", err)
	}
	doc, err := c.XML(ctx, ref, true)
	if err != nil {
		return failNet(ref, "", err)
	}
	tmp, err := writeTemp(doc)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmp)
		}
	}()
	if err := a.runEditor(tmp); err != nil {
		return err
	}
	data, err := os.ReadFile(tmp)
	if err != nil {
		return &failure{lines: []string{fmt.Sprintf("Failed to read file '%s': %s", tmp, errText(err))}}
	}
	edited := string(data)
	if edited == doc {
		a.say("Network %s XML configuration not changed.\n", n.Name)
		return nil
	}
	// Re-read, as virsh does, to catch a definition changed by someone else
	// while the editor was open.
	now, err := c.XML(ctx, ref, true)
	if err != nil {
		keep = true
		return failNet(ref, "", err)
	}
	if now != doc {
		keep = true
		return &failure{lines: []string{
			"The XML configuration was changed by another user.",
			fmt.Sprintf("your edited XML is kept in %s", tmp),
		}}
	}
	def, err := c.Define(ctx, edited)
	if err != nil {
		keep = true
		return fail(fmt.Sprintf("Failed to define network %s from the edited XML, kept in %s", n.Name, tmp), err)
	}
	a.say("Network %s XML configuration edited.\n", def.Name)
	return nil
}

// writeTemp stores doc in a new temp file, as virsh's /tmp/virshXXXXXX.xml.
func writeTemp(doc string) (string, error) {
	f, err := os.CreateTemp("", "vnetctl*.xml")
	if err != nil {
		return "", &failure{lines: []string{fmt.Sprintf("failed to create temporary file: %v", err)}}
	}
	if _, err := f.WriteString(doc); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", &failure{lines: []string{fmt.Sprintf("failed to write temporary file '%s': %v", f.Name(), err)}}
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", &failure{lines: []string{fmt.Sprintf("failed to write temporary file '%s': %v", f.Name(), err)}}
	}
	return f.Name(), nil
}

// editor returns the editor command line: $VISUAL, $EDITOR, else vi.
func editor() string {
	for _, v := range []string{"VISUAL", "EDITOR"} {
		if e := os.Getenv(v); e != "" {
			return e
		}
	}
	return "vi"
}

// runEditor runs the editor on path through sh -c, like virsh, so that
// EDITOR may carry arguments ("emacs -nw").
func (a *app) runEditor(path string) error {
	line := editor() + " " + shellQuote(path)
	cmd := exec.Command("sh", "-c", line)
	cmd.Stdin = os.Stdin
	cmd.Stdout = a.stdout
	cmd.Stderr = a.stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.Exited():
		// libvirt's wording for a failed child process.
		return &failure{lines: []string{fmt.Sprintf("Child process (sh -c %s) unexpected exit status %d", shellQuote(line), ee.ExitCode())}}
	default:
		return &failure{lines: []string{fmt.Sprintf("Child process (sh -c %s) failed: %v", shellQuote(line), err)}}
	}
}

// shellQuote quotes s for sh when it holds anything but safe characters.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./=+,:@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
