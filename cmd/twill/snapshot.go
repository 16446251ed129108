package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// placeholder until the snapshot command lands.
func newSnapshotCmd() *cobra.Command {
	return &cobra.Command{Use: "snapshot", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
