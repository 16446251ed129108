package cni

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// TestCNIAddAnswersTheVersionAsked: a runtime gets its ADD result in the
// cniVersion of its configuration, for every version the plugin supports.
// containerd 1.6 and 1.7 reject a 1.1.0 result, so deploy/twill.yaml ships
// 1.0.0 and the result must be a 1.0.0 one.
func TestCNIAddAnswersTheVersionAsked(t *testing.T) {
	n := newNode(t, "10.244.9.1/24", 1450)
	for i, v := range []string{"1.0.0", "0.4.0", "0.3.1", "1.1.0"} {
		pod := n.newPod(i)
		conf := strings.Replace(n.pluginConf(""), `"cniVersion":"1.1.0"`, fmt.Sprintf(`"cniVersion":%q`, v), 1)
		out, _, err := n.plugin("ADD", fmt.Sprintf("ver%d", i), pod, conf)
		if err != nil {
			t.Fatalf("ADD with cniVersion %s: %v\n%s", v, err, out)
		}
		var res struct {
			CNIVersion string            `json:"cniVersion"`
			IPs        []json.RawMessage `json:"ips"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("ADD result for cniVersion %s: %v\n%s", v, err, out)
		}
		if res.CNIVersion != v || len(res.IPs) != 1 {
			t.Errorf("ADD with cniVersion %s answered cniVersion %q with %d IPs, want %s with 1:\n%s", v, res.CNIVersion, len(res.IPs), v, out)
		}
	}
}

// TestCNIUnsupportedVersionNamesTheFix: a conflist asking for a version
// twill-cni does not answer gets the spec's code 1 (incompatible CNI
// versions), and the message the runtime shows (kubectl describe pod:
// FailedCreatePodSandBox) names the version asked, the versions answered
// and the cniVersion to put in the conflist. Nothing is made in the pod.
func TestCNIUnsupportedVersionNamesTheFix(t *testing.T) {
	n := newNode(t, "10.244.9.1/24", 1450)
	pod := n.newPod(0)
	conf := strings.Replace(n.pluginConf(""), `"cniVersion":"1.1.0"`, `"cniVersion":"2.0.0"`, 1)
	out, _, err := n.plugin("ADD", "badver", pod, conf)
	var e types.Error
	if err == nil || json.Unmarshal([]byte(out), &e) != nil {
		t.Fatalf("ADD with cniVersion 2.0.0: %v, output %q: want a CNI error object", err, out)
	}
	msg := e.Error()
	for _, want := range []string{`config is "2.0.0"`, "twill-cni answers cniVersion 0.1.0,", "1.1.0", `set "cniVersion" in the conflist`, `to "1.0.0"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if e.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("code %d, want %d (incompatible CNI versions)", e.Code, types.ErrIncompatibleCNIVersion)
	}
	withNS(t, pod, func(h *netlink.Handle) {
		if l, err := h.LinkByName("eth0"); err == nil {
			t.Errorf("the refused ADD made %s in the pod", l.Attrs().Name)
		}
	})
}

func TestExplainVersionErrorLeavesOthersAlone(t *testing.T) {
	other := types.NewError(types.ErrTryAgainLater, "subnet file not found", "")
	if got := explainVersionError(other); got != other {
		t.Errorf("a code %d error was changed: %+v", other.Code, got)
	}
	got := explainVersionError(types.NewError(types.ErrIncompatibleCNIVersion, "config version does not allow GC", ""))
	if !strings.Contains(got.Details, `to "1.0.0"`) || got.Msg != "config version does not allow GC" {
		t.Errorf("version error explained as %+v", got)
	}
}
