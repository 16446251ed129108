// Package lab builds a whole virtual twill cluster on one machine out of
// network namespaces, so that twill can be demonstrated, tested end to end and
// taught without any real nodes.
//
// A lab named "twill" is made of:
//
//	twill-underlay     the L2 switch: bridge br0 (192.168.77.1/24) and a real etcd
//	twill-node1..N     nodes: eth0 192.168.77.(10+i) on br0, pod subnet 10.244.i.0/24,
//	                   kube-proxy style iptables rules for the lab's Services
//	twill-node1-a..    pods: eth0 in the node's subnet, running `twill lab serve`
//
// A lab runs in one of two modes (Config.Agent, State.Mode):
//
//   - agent mode (ModeAgent, what `twill lab up` builds): net-conf.json is
//     stored in etcd, every node runs the real `twill agent` (inside the node
//     namespace, against the lab's etcd; it leases the subnet, programs cni0's
//     peers, vxlan twill.1 or host-gw routes, its nftables firewall, and
//     repairs drift), and pods are created through the real twill-cni plugin
//     (installed in each node's root), which picks their addresses
//     (10.244.i.2, .3, ...). Pods also serve a line echo on EchoPort for
//     Stream.
//   - static mode (ModeStatic, the library default and `lab up --static`):
//     the lab programs the pod network itself, the way Flannel would, with
//     fixed addresses (pods at 10.244.i.(10+k), VTEP MACs 02:77:..). Tests
//     that need a fixed picture (test/difftrace) use it.
//
// Nothing is created in the root network namespace. Every namespace a lab
// creates starts with "<name>-", and its state lives in /run/twill-lab/<name>/
// (state.json, etcd data, logs, per-node file roots), so labs with different
// names coexist.
//
// Scenarios (see Scenarios) break a node exactly the way FAILURES.md
// describes, so that `twill doctor` can be shown to find and fix it. In agent
// mode Break pauses the node's agent first (SIGSTOP; it would repair the
// failure, which is its job) and Fix resumes it.
//
// Entry points: Up, Down, Load/Status, Exec target resolution (Target), Call,
// Stream, Serve/ServeEcho, Break, Fix, AgentControl, EtcdControl and Demo.
// The CLI in cmd/twill/lab*.go is a thin shell around them. docs/lab.md is
// the user's guide.
package lab
