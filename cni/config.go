package cni

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/twillnet/twill/subnetfile"
)

// RootEnv is the environment variable that prefixes every default file path
// the plugin uses (subnet file, IPAM state). The lab sets it per simulated
// node; on a real node it is unset and the root is "/".
const RootEnv = "TWILL_ROOT"

// PluginType is the "type" of twill's entry in a CNI conflist.
const PluginType = "twill"

// Defaults of the optional configuration keys.
const (
	DefaultBridge  = "cni0"
	DefaultDataDir = "/var/lib/cni/networks" // + "/<network name>"
)

// netConfJSON is the plugin's entry in the conflist, as the runtime passes
// it on stdin. Every twill key is optional.
type netConfJSON struct {
	types.PluginConf
	SubnetFile       string `json:"subnetFile,omitempty"`
	Bridge           string `json:"bridge,omitempty"`
	DataDir          string `json:"dataDir,omitempty"`
	MTU              int    `json:"mtu,omitempty"`
	HairpinMode      *bool  `json:"hairpinMode,omitempty"`
	IsDefaultGateway *bool  `json:"isDefaultGateway,omitempty"`
	// LegacyAttachments is the name an early version of the spec used for
	// cni.dev/valid-attachments; libcni still sends both.
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// Config is the plugin configuration with defaults applied and paths
// resolved against the root.
type Config struct {
	// Name is the network name (the conflist's "name").
	Name string
	// CNIVersion is the spec version the runtime asked for; results are
	// printed in it.
	CNIVersion string
	// SubnetFiles are the subnet files to read, in order; the first that
	// exists wins. By default twill's file, then Flannel's.
	SubnetFiles []string
	// Bridge is the node bridge pods attach to.
	Bridge string
	// DataDir holds the IPAM state: one file per allocated address.
	DataDir string
	// MTU overrides the pod MTU of the subnet file when not 0.
	MTU int
	// Hairpin turns hairpin mode on for the pod's bridge port, so a pod can
	// reach itself through a Service address.
	Hairpin bool
	// DefaultGateway gives the pod a default route via the bridge address.
	DefaultGateway bool
	// ValidAttachments lists the attachments still in use (GC only).
	ValidAttachments []types.GCAttachment
	// PrevResult is the result of the previous ADD (CHECK, DEL), if the
	// runtime passed one; nil otherwise.
	PrevResult *current.Result
}

var (
	networkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)
	linkName    = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,15}$`)
)

// ParseConfig reads the plugin's configuration from stdin data. root is the
// value of TWILL_ROOT ("" means "/"); it prefixes the default paths, not
// paths given explicitly. Errors name the offending key.
func ParseConfig(data []byte, root string) (Config, error) {
	var raw netConfJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("CNI config: %w", err)
	}
	c := Config{
		Name:             raw.Name,
		CNIVersion:       raw.CNIVersion,
		Bridge:           raw.Bridge,
		DataDir:          raw.DataDir,
		MTU:              raw.MTU,
		Hairpin:          raw.HairpinMode == nil || *raw.HairpinMode,
		DefaultGateway:   raw.IsDefaultGateway == nil || *raw.IsDefaultGateway,
		ValidAttachments: raw.ValidAttachments,
	}
	if c.ValidAttachments == nil {
		c.ValidAttachments = raw.LegacyAttachments
	}
	if raw.RawPrevResult != nil {
		if err := version.ParsePrevResult(&raw.PluginConf); err != nil {
			return Config{}, fmt.Errorf("CNI config: prevResult: %w", err)
		}
		prev, err := current.NewResultFromResult(raw.PrevResult)
		if err != nil {
			return Config{}, fmt.Errorf("CNI config: prevResult: %w", err)
		}
		c.PrevResult = prev
	}
	if root == "" {
		root = "/"
	}
	if !networkName.MatchString(c.Name) || c.Name == "." || c.Name == ".." {
		return Config{}, fmt.Errorf("CNI config: name %q: must be letters, digits, '_', '.' or '-'", c.Name)
	}
	if raw.Type != "" && raw.Type != PluginType {
		return Config{}, fmt.Errorf("CNI config: type %q: this plugin is %q", raw.Type, PluginType)
	}
	if raw.SubnetFile != "" {
		if !filepath.IsAbs(raw.SubnetFile) {
			return Config{}, fmt.Errorf("CNI config: subnetFile %q: must be an absolute path", raw.SubnetFile)
		}
		c.SubnetFiles = []string{raw.SubnetFile}
	} else {
		c.SubnetFiles = []string{
			filepath.Join(root, subnetfile.TwillPath),
			filepath.Join(root, subnetfile.FlannelPath),
		}
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if !linkName.MatchString(c.Bridge) {
		return Config{}, fmt.Errorf("CNI config: bridge %q: not a valid interface name (1-15 letters, digits, '_', '.', '-')", c.Bridge)
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join(root, DefaultDataDir, c.Name)
	} else if !filepath.IsAbs(c.DataDir) {
		return Config{}, fmt.Errorf("CNI config: dataDir %q: must be an absolute path", c.DataDir)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return Config{}, fmt.Errorf("CNI config: mtu %d: must be between 576 and 65535 (or absent to use the subnet file's)", c.MTU)
	}
	return c, nil
}
