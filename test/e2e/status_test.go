package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// labStatus is the part of `twill lab status -o json` the tests read.
type labStatus struct {
	Healthy bool `json:"healthy"`
	Nodes   []struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		IP        string `json:"ip"`
		Subnet    string `json:"subnet"`
		Root      string `json:"root"`
		Pods      []struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
			IP        string `json:"ip"`
			IPv6      string `json:"ipv6"`
		} `json:"pods"`
		IPv6       string `json:"ipv6"`
		IPv6Subnet string `json:"ipv6Subnet"`
	} `json:"nodes"`
	Services []struct {
		Name       string   `json:"name"`
		ClusterIPs []string `json:"clusterIPs"`
		Port       int      `json:"port"`
		Endpoints  []string `json:"endpoints"`
	} `json:"services"`
	Problems []string `json:"problems"`
}

// status reads `twill lab status -o json` of the named lab.
func status(t *testing.T, name string) labStatus {
	t.Helper()
	r := tw(t, "lab", "status", "-o", "json", "--name", name)
	var st labStatus
	if err := json.NewDecoder(strings.NewReader(r.out)).Decode(&st); err != nil {
		t.Fatalf("lab status: %v\n%s", err, r.out)
	}
	return st
}

// resolve turns "node2-a:8080" into the pod's real address and port (the
// CNI plugin picks pod addresses); anything else is returned as is.
func resolve(t *testing.T, target string) string {
	t.Helper()
	host, port, ok := strings.Cut(target, ":")
	if !ok {
		return target
	}
	for _, n := range status(t, labName).Nodes {
		for _, p := range n.Pods {
			if p.Name == host {
				return p.IP + ":" + port
			}
		}
	}
	return target
}
