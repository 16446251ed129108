package cni

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// Main runs the plugin: it reads CNI_COMMAND and the other CNI_* variables
// and the configuration on stdin, runs the command and prints its result
// (or a CNI error object) on stdout. versionString is twill's version.
func Main(versionString string) {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: Add, Del: Del, Check: Check, Status: Status, GC: GC},
		version.All, "twill-cni "+versionString+": the twill pod network's CNI plugin (CNI spec 1.1)")
}
