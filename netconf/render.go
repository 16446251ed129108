package netconf

import "encoding/json"

// JSON renders the config as net-conf.json with every default written out,
// e.g. {"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0",
// "SubnetMax":"10.244.255.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}.
// Parse(src, c.JSON()) gives c back for every Config Parse returned.
func (c Config) JSON() []byte {
	b, _ := json.Marshal(c) // strings, ints, bools and text-marshalled netip values: cannot fail
	return b
}
