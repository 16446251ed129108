package cni

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
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
