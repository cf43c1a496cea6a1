package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeVnetctl stands in for vnetctl when the completion asks for network
// names: it appends its arguments to $FAKE_LOG and answers net-list like the
// daemon would with an active "default" and an inactive "idle".
const fakeVnetctl = `#!/bin/sh
echo "$*" >>"$FAKE_LOG"
case " $* " in
*" --inactive "*) echo idle ;;
*" --uuid "*) echo 400e018b-b381-4cf2-aa2e-65601ecf6eeb ;;
*" --all "*) printf 'default\nidle\n' ;;
*) echo default ;;
esac
`

// complete sources doc/vnetctl.bash in a bash without the bash-completion
// package loaded, sets COMP_WORDS to words (words[0] is replaced by the fake
// vnetctl) with the cursor on the last word, runs the completion function and
// returns COMPREPLY and what the fake was called with.
func complete(t *testing.T, dir string, words ...string) (reply []string, calls string) {
	t.Helper()
	script, err := filepath.Abs("../../doc/vnetctl.bash")
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "calls.log")
	os.Remove(logFile)
	quoted := make([]string, len(words))
	quoted[0] = shQuote(filepath.Join(dir, "vnetctl"))
	for i, w := range words[1:] {
		quoted[i+1] = shQuote(w)
	}
	prog := "source " + shQuote(script) + "\n" +
		"COMP_WORDS=(" + strings.Join(quoted, " ") + ")\n" +
		"COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n" +
		"COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n" +
		"_vnetctl vnetctl \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n" +
		"printf '%s\\n' \"${COMPREPLY[@]}\"\n"
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FAKE_LOG="+logFile, "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			reply = append(reply, l)
		}
	}
	slices.Sort(reply)
	b, _ := os.ReadFile(logFile)
	return reply, strings.TrimSpace(string(b))
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestBashCompletion checks doc/vnetctl.bash with global options before the
// command, in every spelling bash hands to a completion function.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vnetctl"), []byte(fakeVnetctl), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "net.xml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "my.sock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	starts := []string{"net-start"}
	files := []string{"my.sock", "net.xml", "vnetctl"}
	for _, tc := range []struct {
		name  string
		words []string
		want  []string
		calls string // the fake's arguments; "" when it must not be called
	}{
		{"command", []string{"vnetctl", "net-st"}, starts, ""},
		{"commands after --socket", []string{"vnetctl", "--socket", "/x.sock", "net-st"}, starts, ""},
		{"commands after -q", []string{"vnetctl", "-q", "net-st"}, starts, ""},
		{"commands after --quiet", []string{"vnetctl", "--quiet", "net-st"}, starts, ""},
		{"commands after --socket=X split at =", []string{"vnetctl", "--socket", "=", "/x.sock", "net-st"}, starts, ""},
		{"commands after --socket=X as one word", []string{"vnetctl", "--socket=/x.sock", "net-st"}, starts, ""},
		{"commands after -q --socket X", []string{"vnetctl", "-q", "--socket", "/x.sock", "net-d"},
			[]string{"net-define", "net-destroy", "net-dhcp-leases", "net-doctor", "net-dumpxml"}, ""},
		{"global options", []string{"vnetctl", "--"}, []string{"--quiet", "--socket"}, ""},
		{"socket path", []string{"vnetctl", "--socket", "my"}, []string{"my.sock"}, ""},
		{"socket path after =", []string{"vnetctl", "--socket", "=", "my"}, []string{"my.sock"}, ""},
		{"socket path at =", []string{"vnetctl", "--socket", "="}, files, ""},
		{"socket path in one word", []string{"vnetctl", "--socket=my"}, []string{"--socket=my.sock"}, ""},
		{"networks use the socket", []string{"vnetctl", "--socket", "/x.sock", "net-info", ""},
			[]string{"default", "idle"}, "-q --socket /x.sock net-list --all --name"},
		{"networks use the socket given with =", []string{"vnetctl", "--socket", "=", "/x.sock", "-q", "net-dumpxml", "d"},
			[]string{"default"}, "-q --socket /x.sock net-list --all --name"},
		{"networks use the socket given as one word", []string{"vnetctl", "--socket=/x.sock", "net-dumpxml", ""},
			[]string{"default", "idle"}, "-q --socket /x.sock net-list --all --name"},
		{"socket after the command", []string{"vnetctl", "net-dumpxml", "--socket", "/y.sock", ""},
			[]string{"default", "idle"}, "-q --socket /y.sock net-list --all --name"},
		{"net-start offers inactive networks", []string{"vnetctl", "-q", "net-start", ""},
			[]string{"idle"}, "-q net-list --inactive --name"},
		{"net-destroy offers active networks", []string{"vnetctl", "net-destroy", ""},
			[]string{"default"}, "-q net-list --name"},
		{"one network only", []string{"vnetctl", "net-info", "default", ""}, nil, ""},
		{"net-list options after -q", []string{"vnetctl", "-q", "net-list", "--a"},
			[]string{"--all", "--autostart"}, ""},
		{"net-define file after --socket", []string{"vnetctl", "--socket", "/x.sock", "net-define", "n"},
			[]string{"net.xml"}, ""},
		{"net-update command", []string{"vnetctl", "-q", "net-update", "default", "add-"},
			[]string{"add-first", "add-last"}, ""},
		{"net-update section", []string{"vnetctl", "net-update", "default", "add", "ip-dhcp-h"},
			[]string{"ip-dhcp-host"}, ""},
		{"net-doctor options", []string{"vnetctl", "net-doctor", "--j"}, []string{"--json"}, ""},
		{"net-doctor network", []string{"vnetctl", "net-doctor", ""},
			[]string{"default", "idle"}, "-q net-list --all --name"},
		{"net-event warning", []string{"vnetctl", "net-event", "--event", "w"}, []string{"warning"}, ""},
		{"net-update section option", []string{"vnetctl", "net-update", "--section", "dns-"},
			[]string{"dns-host", "dns-srv", "dns-txt"}, ""},
		{"net-port-attach options", []string{"vnetctl", "net-port-attach", "--f"}, []string{"--fd"}, ""},
		{"net-port-attach network", []string{"vnetctl", "net-port-attach", ""},
			[]string{"default"}, "-q net-list --name"},
		{"net-port-attach --fd value", []string{"vnetctl", "net-port-attach", "--fd", ""}, nil, ""},
		{"net-port-attach command's arguments", []string{"vnetctl", "net-port-attach", "default", "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d", "--", "qemu", "n"},
			[]string{"net.xml"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, calls := complete(t, dir, tc.words...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("COMPREPLY = %q, want %q", got, tc.want)
			}
			if calls != tc.calls {
				t.Errorf("vnetctl called with %q, want %q", calls, tc.calls)
			}
		})
	}
}
