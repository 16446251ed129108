package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// placeholder until the lab command lands.
func newLabCmd() *cobra.Command {
	return &cobra.Command{Use: "lab", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
