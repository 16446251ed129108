package netconf

import "encoding/json"

// JSON renders the config as net-conf.json with every set value written out,
// e.g. {"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0",
// "SubnetMax":"10.244.255.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472}};
// a dual-stack config adds "EnableIPv6":true and the IPv6 keys, an
// IPv6-only one also "EnableIPv4":false.
// Zero values are left out, so the JSON of a partly filled Config parses
// with the defaults. Parse(src, c.JSON()) gives c back for every Config
// Parse returned.
func (c Config) JSON() []byte {
	type backend struct {
		Type          string `json:"Type,omitempty"`
		VNI           int    `json:"VNI,omitempty"`
		Port          int    `json:"Port,omitempty"`
		DirectRouting bool   `json:"DirectRouting,omitempty"`
		MTU           int    `json:"MTU,omitempty"`
	}
	var out struct {
		EnableIPv4    *bool   `json:"EnableIPv4,omitempty"`
		EnableIPv6    bool    `json:"EnableIPv6,omitempty"`
		Network       string  `json:"Network,omitempty"`
		SubnetLen     int     `json:"SubnetLen,omitempty"`
		SubnetMin     string  `json:"SubnetMin,omitempty"`
		SubnetMax     string  `json:"SubnetMax,omitempty"`
		IPv6Network   string  `json:"IPv6Network,omitempty"`
		IPv6SubnetLen int     `json:"IPv6SubnetLen,omitempty"`
		IPv6SubnetMin string  `json:"IPv6SubnetMin,omitempty"`
		IPv6SubnetMax string  `json:"IPv6SubnetMax,omitempty"`
		Backend       backend `json:"Backend"`
	}
	if !c.EnableIPv4() && c.EnableIPv6() {
		off := false
		out.EnableIPv4 = &off // IPv6-only
	}
	out.Network, out.SubnetLen, out.SubnetMin, out.SubnetMax = str(c.Network), c.SubnetLen, str(c.SubnetMin), str(c.SubnetMax)
	if c.EnableIPv6() {
		out.EnableIPv6 = true
		out.IPv6Network, out.IPv6SubnetLen = c.IPv6Network.String(), c.IPv6SubnetLen
		out.IPv6SubnetMin, out.IPv6SubnetMax = str(c.IPv6SubnetMin), str(c.IPv6SubnetMax)
	}
	out.Backend = backend(c.Backend)
	b, _ := json.Marshal(out) // strings, ints and bools: cannot fail
	return b
}

// str renders a valid address or prefix, and "" for the zero value.
func str(v interface {
	IsValid() bool
	String() string
}) string {
	if v.IsValid() {
		return v.String()
	}
	return ""
}
