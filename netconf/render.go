package netconf

import "encoding/json"

// JSON renders the config as net-conf.json with every set value written out,
// e.g. {"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0",
// "SubnetMax":"10.244.255.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}.
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
		Network   string  `json:"Network,omitempty"`
		SubnetLen int     `json:"SubnetLen,omitempty"`
		SubnetMin string  `json:"SubnetMin,omitempty"`
		SubnetMax string  `json:"SubnetMax,omitempty"`
		Backend   backend `json:"Backend"`
	}
	if c.Network.IsValid() {
		out.Network = c.Network.String()
	}
	out.SubnetLen = c.SubnetLen
	if c.SubnetMin.IsValid() {
		out.SubnetMin = c.SubnetMin.String()
	}
	if c.SubnetMax.IsValid() {
		out.SubnetMax = c.SubnetMax.String()
	}
	out.Backend = backend(c.Backend)
	b, _ := json.Marshal(out) // strings, ints and bools: cannot fail
	return b
}
