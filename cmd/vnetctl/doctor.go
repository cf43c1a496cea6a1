package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// exitStatus ends vnetctl with a status and no error message: net-doctor's
// report is the output, and a status of 1 says problems were found.
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (a *app) netDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:                   "net-doctor [NETWORK] [--json]",
		Short:                 "say why guests get no address, no names or no way out, and what to do",
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			vals, given, err := optArgs(cmd, args, []string{"network"}, 0)
			if err != nil {
				return err
			}
			if given[0] && vals[0] == "" {
				return emptyOption("network")
			}
			ref := vals[0]
			rep, err := a.client().Doctor(cmd.Context(), ref)
			if err != nil {
				if ref != "" {
					return failNet(ref, "Failed to diagnose network "+ref, err)
				}
				return fail("Failed to diagnose the networks", err)
			}
			problems := 0
			for _, c := range rep.Checks {
				if !c.OK {
					problems++
				}
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, c := range rep.Checks {
					if c.OK {
						continue
					}
					fmt.Fprintf(a.stdout, "PROBLEM %s: %s\n", c.ID, c.Detail)
					if c.Fix != "" {
						fmt.Fprintf(a.stdout, "  fix: %s\n", c.Fix)
					}
				}
				if problems == 0 {
					fmt.Fprintln(a.stdout, "no problems found")
				} else {
					fmt.Fprintf(a.stdout, "%d problem(s) found\n", problems)
				}
			}
			if problems > 0 {
				return &exitStatus{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().String("network", "", "network name or uuid (default: every active network)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print every check, passing ones too, as JSON")
	return cmd
}
