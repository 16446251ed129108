package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// placeholder until the doctor command lands.
func newDoctorCmd() *cobra.Command {
	return &cobra.Command{Use: "doctor", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
