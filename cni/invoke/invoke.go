// Package invoke runs the twill CNI plugin binary the way a container
// runtime does (CNI_* variables, the config on stdin, one process per call),
// inside a node's network namespace. The lab uses it to create and delete
// pods through the real plugin; tests and benchmarks use it to time calls.
//
// It lives apart from package cni so the plugin binary does not link it.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/twillnet/twill/nsrun"
)

// Call is one plugin invocation.
type Call struct {
	// Plugin is the plugin binary, e.g. <root>/opt/cni/bin/twill.
	Plugin string
	// NodeNetns is the named network namespace of the node the plugin acts
	// on ("" = the caller's own).
	NodeNetns string
	// Root is TWILL_ROOT for the plugin ("" = unset, i.e. "/").
	Root string
	// Command is ADD, DEL, CHECK, STATUS, GC or VERSION.
	Command string
	// ContainerID identifies the attachment (ADD, DEL, CHECK).
	ContainerID string
	// Netns is the pod's namespace path, e.g. /run/netns/<pod> (ADD, CHECK;
	// optional for DEL).
	Netns string
	// IfName is the pod interface name; default eth0.
	IfName string
	// Config is the plugin's JSON config; default
	// {"cniVersion":"1.1.0","name":"twill","type":"twill"}.
	Config []byte
	// Timeout bounds the call; default 30 s.
	Timeout time.Duration
}

// DefaultConfig is the plugin entry of twill's standard conflist.
const DefaultConfig = `{"cniVersion":"1.1.0","name":"twill","type":"twill"}`

// Run runs the call and returns the plugin's stdout and how long the
// process took. A failing plugin's CNI error object is returned as a
// *types.Error (code and message); other failures name the command.
func (c Call) Run(ctx context.Context) ([]byte, time.Duration, error) {
	if c.IfName == "" {
		c.IfName = "eth0"
	}
	if len(c.Config) == 0 {
		c.Config = []byte(DefaultConfig)
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	env := append(os.Environ(),
		"CNI_COMMAND="+c.Command, "CNI_CONTAINERID="+c.ContainerID, "CNI_IFNAME="+c.IfName,
		"CNI_PATH="+dirOf(c.Plugin))
	if c.Netns != "" {
		env = append(env, "CNI_NETNS="+c.Netns)
	}
	if c.Root != "" {
		env = append(env, "TWILL_ROOT="+c.Root)
	}
	var stdout, stderr bytes.Buffer
	var took time.Duration
	err := nsrun.Do(c.NodeNetns, func() error {
		cmd := exec.CommandContext(ctx, c.Plugin)
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(c.Config)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		took = time.Since(start)
		return err
	})
	if err != nil {
		var e types.Error
		if jerr := json.Unmarshal(stdout.Bytes(), &e); jerr == nil && e.Msg != "" {
			return stdout.Bytes(), took, &e
		}
		return stdout.Bytes(), took, fmt.Errorf("CNI %s %s (plugin %s in netns %q): %w: %s",
			c.Command, c.ContainerID, c.Plugin, c.NodeNetns, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), took, nil
}

// Add runs CNI ADD and returns the parsed result.
func (c Call) Add(ctx context.Context) (*current.Result, error) {
	c.Command = "ADD"
	out, _, err := c.Run(ctx)
	if err != nil {
		return nil, err
	}
	var res current.Result
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("CNI ADD %s: result %q: %w", c.ContainerID, out, err)
	}
	return &res, nil
}

// Del runs CNI DEL.
func (c Call) Del(ctx context.Context) error {
	c.Command = "DEL"
	_, _, err := c.Run(ctx)
	return err
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return "."
}
