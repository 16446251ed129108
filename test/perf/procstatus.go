package perf

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is a process's resident memory as the kernel reports it in
// /proc/<pid>/status.
type Memory struct {
	// RSS is the resident set size now (VmRSS), in bytes.
	RSS int64
	// HWM is the peak resident set size since the process started (VmHWM),
	// in bytes.
	HWM int64
}

// MB returns b in mebibytes, the unit the benchmarks report memory in.
func MB(b int64) float64 { return float64(b) / (1 << 20) }

// ParseProcStatus reads VmRSS and VmHWM from the text of a
// /proc/<pid>/status file. Both must be present (a kernel thread or a zombie
// has neither: that is an error naming what is missing).
func ParseProcStatus(text string) (Memory, error) {
	var m Memory
	var seenRSS, seenHWM bool
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("/proc status %s: %q: want \"<number> kB\"", key, strings.TrimSpace(val))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return Memory{}, fmt.Errorf("/proc status %s: %q: not a size in kB", key, f[0])
		}
		if key == "VmRSS" {
			m.RSS, seenRSS = kb*1024, true
		} else {
			m.HWM, seenHWM = kb*1024, true
		}
	}
	if !seenRSS || !seenHWM {
		return Memory{}, fmt.Errorf("/proc status: VmRSS or VmHWM missing (is the process a zombie or a kernel thread?)")
	}
	return m, nil
}

// ReadMemory reads the resident memory of process pid.
func ReadMemory(pid int) (Memory, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return Memory{}, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	m, err := ParseProcStatus(string(b))
	if err != nil {
		return Memory{}, fmt.Errorf("memory of process %d: %s: %w", pid, path, err)
	}
	return m, nil
}
