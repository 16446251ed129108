package main

import (
	"strings"
	"testing"
)

func TestKubeFlagsCheck(t *testing.T) {
	tests := []struct {
		store, netConf, wantErr string
	}{
		{"etcd", "", ""},
		{"kubernetes", "/etc/twill/net-conf.json", ""},
		{"kubernetes", "", "--store kubernetes needs --net-conf FILE"},
		{"k8s", "x", `--store "k8s": want etcd or kubernetes`},
	}
	for _, tt := range tests {
		f := kubeFlags{store: tt.store}
		err := f.check(tt.netConf)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("--store %s --net-conf %q: err = %v, want %q", tt.store, tt.netConf, err, tt.wantErr)
		}
	}
}
