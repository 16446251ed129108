package etcdtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes this test binary play a test process that starts etcd
// and is then killed (TestHelperProcess).
const helperEnv = "ETCDTEST_HELPER_PROCESS"

// TestHelperProcess is not a test of its own: TestEtcdDiesWithTheTestProcess
// runs this binary with helperEnv set, and then it starts etcd the way a
// test does, from a goroutine whose OS thread ends right after (a locked
// goroutine returning), prints etcd's pid and waits to be killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	started := make(chan *Server)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		started <- StartServer(t, Options{})
	}()
	s := <-started
	fmt.Printf("etcd pid %d\n", s.cmd.Process.Pid)
	time.Sleep(2 * time.Minute) // killed long before
}

// TestEtcdDiesWithTheTestProcess: a test process that is killed (SIGKILL,
// no cleanup runs) leaves no etcd behind, and etcd does not die early when
// the thread that started it ends.
func TestEtcdDiesWithTheTestProcess(t *testing.T) {
	if _, err := Bin(); err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=3m")
	helper.Env = append(os.Environ(), helperEnv+"=1")
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	helperDone := make(chan struct{})
	go func() { helper.Wait(); close(helperDone) }()
	t.Cleanup(func() { helper.Process.Kill(); <-helperDone })

	pids := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var pid int
			if _, err := fmt.Sscanf(sc.Text(), "etcd pid %d", &pid); err == nil {
				pids <- pid
				return
			}
		}
	}()
	var pid int
	select {
	case pid = <-pids:
	case <-helperDone:
		t.Fatalf("the helper process exited before starting etcd: %v", helper.ProcessState)
	case <-time.After(90 * time.Second):
		t.Fatal("the helper process did not start etcd within 90s")
	}
	t.Cleanup(func() {
		if running(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	time.Sleep(time.Second)
	if !running(pid) {
		t.Fatalf("etcd (pid %d) died a second after the thread that started it ended; its test process still runs", pid)
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-helperDone
	for deadline := time.Now().Add(10 * time.Second); running(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("etcd (pid %d) still runs 10s after its test process was killed: orphaned", pid)
		}
	}
}

// running reports whether pid is a live etcd (not gone, not a zombie, not
// a reused pid of another program).
func running(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "etcd") {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
