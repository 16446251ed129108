package cni

import (
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Main runs the plugin: it reads CNI_COMMAND and the other CNI_* variables
// and the configuration on stdin, runs the command and prints its result
// (or a CNI error object) on stdout. versionString is twill's version.
func Main(versionString string) {
	e := skel.PluginMainFuncsWithError(skel.CNIFuncs{Add: Add, Del: Del, Check: Check, Status: Status, GC: GC},
		version.All, "twill-cni "+versionString+": the twill pod network's CNI plugin (CNI spec 1.1)")
	if e == nil {
		return
	}
	if err := explainVersionError(e).Print(); err != nil {
		log.Print("twill-cni: writing the error to stdout: ", err)
	}
	os.Exit(1)
}

// ShippedCNIVersion is the cniVersion deploy/twill.yaml's conflist
// declares: the newest every common runtime accepts results of.
const ShippedCNIVersion = "1.0.0"

// explainVersionError adds to a CNI version error (code 1: the conflist
// asks for a version the plugin does not answer, or one a command needs)
// which versions twill-cni answers and what to put in the conflist; other
// errors pass unchanged. The runtime shows Msg and Details in its log and
// in the pod's FailedCreatePodSandBox Event (kubectl describe pod). Pure.
func explainVersionError(e *types.Error) *types.Error {
	if e == nil || e.Code != types.ErrIncompatibleCNIVersion {
		return e
	}
	out := *e
	fix := fmt.Sprintf("twill-cni answers cniVersion %s; set \"cniVersion\" in the conflist (/etc/cni/net.d/10-twill.conflist, from cni-conf.json of deploy/twill.yaml) to %q, which containerd 1.6, 1.7 and 2.x and CRI-O all accept",
		strings.Join(version.All.SupportedVersions(), ", "), ShippedCNIVersion)
	if out.Details != "" {
		out.Details += "; " + fix
	} else {
		out.Details = fix
	}
	return &out
}
