package interop

// The environment one test run shares: the binaries it drives, its temporary directory, and
// helpers for bundles, runc, polling and conmond's lifecycle.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containers/conmon-rs/pkg/client"
)

const (
	defaultConmond = "../../target/debug/conmond"
	defaultRunc    = "/usr/sbin/runc"
	defaultBusybox = "/usr/bin/busybox"

	rpcTimeout  = 30 * time.Second
	pollTimeout = 15 * time.Second
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// env holds what one run of TestConmond shares between its steps.
type env struct {
	conmond, runc, busybox string
	tmp                    string // everything this run creates lives here
	runDir, runtimeRoot    string // conmond's --runtime-dir and runc's --root
	serverLog              string // conmond's own log (LogDriver stdout)
	applets                []string
	containers             []string // created containers, deleted at the end
}

// requirements fails the test loudly if the machine cannot run it.
func requirements(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("interop tests must run as root (runc containers, cgroups); euid is %d", os.Geteuid())
	}
	conmond, err := filepath.Abs(envOr("CONMOND_BINARY", defaultConmond))
	if err != nil {
		t.Fatalf("resolve conmond path: %v", err)
	}
	if st, err := os.Stat(conmond); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("no executable conmond binary at %s (set CONMOND_BINARY or build it with "+
			"`cargo build -p conmon` first): %v", conmond, err)
	}
	e := &env{
		conmond: conmond,
		runc:    envOr("RUNTIME_BINARY", defaultRunc),
		busybox: envOr("BUSYBOX_BINARY", defaultBusybox),
	}
	for _, bin := range []string{e.runc, e.busybox} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("required binary missing: %v", err)
		}
	}
	out, err := exec.Command(e.busybox, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", e.busybox, err)
	}
	e.applets = strings.Fields(string(out))

	// Not t.TempDir(): container cgroups and bundles are torn down by our own
	// cleanup, which must run after conmond is gone; keep the dir on failure for
	// post-mortem unless everything passed.
	e.tmp, err = os.MkdirTemp("", fmt.Sprintf("conmond-interop-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	e.runDir = filepath.Join(e.tmp, "run")
	e.runtimeRoot = filepath.Join(e.tmp, "runc")
	e.serverLog = filepath.Join(e.tmp, "conmond.log")
	return e
}

// bundle creates a busybox OCI bundle whose process runs args.
func (e *env) bundle(t *testing.T, name string, args ...string) string {
	t.Helper()
	dir := filepath.Join(e.tmp, "bundles", name)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(e.busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range e.applets {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(e.runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	process["args"] = args
	process["env"] = []string{"PATH=/bin"}
	spec["root"].(map[string]any)["readonly"] = false
	if raw, err = json.MarshalIndent(spec, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (e *env) runcCmd(args ...string) ([]byte, error) {
	return exec.Command(e.runc, append([]string{"--root", e.runtimeRoot}, args...)...).CombinedOutput()
}

func (e *env) runcStatus(id string) string {
	out, err := e.runcCmd("state", id)
	if err != nil {
		return "unknown (" + strings.TrimSpace(string(out)) + ")"
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "unparsable state: " + string(out)
	}
	return st.Status
}

func (e *env) start(t *testing.T, id string) {
	t.Helper()
	if out, err := e.runcCmd("start", id); err != nil {
		t.Fatalf("runc start %s: %v: %s", id, err, out)
	}
}

// createRunning creates container id running script with a CRI log at logPath, starts it and
// waits until runc reports it running; it returns the container's PID.
func (e *env) createRunning(ctx context.Context, t *testing.T, cl *client.ConmonClient, id, logPath, script string) int {
	t.Helper()
	bundle := e.bundle(t, id, "sh", "-c", script)
	e.containers = append(e.containers, id)
	resp, err := cl.CreateContainer(ctx, &client.CreateContainerConfig{
		ID:         id,
		BundlePath: bundle,
		ExitPaths:  []string{filepath.Join(e.tmp, id+".exit")},
		LogDrivers: []client.ContainerLogDriver{{
			Type: client.LogDriverTypeContainerRuntimeInterface,
			Path: logPath,
		}},
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
	if resp.PID == 0 {
		t.Fatalf("CreateContainer %s: container PID 0", id)
	}
	e.start(t, id)
	waitFor(t, pollTimeout, "container running", func() (bool, string) {
		s := e.runcStatus(id)
		return s == "running", s
	})
	return int(resp.PID)
}

// checkServerPID asks cl's server for its version and fails unless it is the process want.
func checkServerPID(t *testing.T, cl *client.ConmonClient, want int) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	v, err := cl.Version(ctx, &client.VersionConfig{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if int(v.ProcessID) != want {
		t.Fatalf("Version: PID %d, want %d", v.ProcessID, want)
	}
}

func (e *env) config() *client.ConmonServerConfig {
	cfg := client.NewConmonServerConfig(e.runc, e.runtimeRoot, e.runDir)
	cfg.ConmonServerPath = e.conmond
	cfg.CgroupManager = client.CgroupManagerCgroupfs
	cfg.LogLevel = client.LogLevelDebug
	cfg.LogDriver = client.LogDriverStdout
	return cfg
}

// waitFor polls cond until it reports done or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processGone reports whether pid no longer runs (absent or a zombie).
func processGone(pid int) (bool, string) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true, "no /proc entry"
	}
	// Field 3 (after "(comm)") is the state.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		state := s[i+2 : i+3]
		return state == "Z" || state == "X", "state " + state
	}
	return false, s
}

func fileContains(path, want string) (bool, string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err.Error()
	}
	return strings.Contains(string(data), want), fmt.Sprintf("%s contains %q", path, data)
}

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), rpcTimeout)
}

// registerCleanup runs last: it stops conmond if the test did not shut it down, deletes the
// test's containers, and on failure keeps the temporary directory and prints conmond's log.
func (e *env) registerCleanup(t *testing.T, clp **client.ConmonClient, shutDownp *bool) {
	t.Cleanup(func() {
		cl, shutDown := *clp, *shutDownp
		if cl != nil && !shutDown {
			if err := cl.Shutdown(); err != nil {
				t.Logf("cleanup: shutdown: %v", err)
			}
		}
		for _, id := range e.containers {
			_, _ = e.runcCmd("delete", "--force", id)
		}
		if t.Failed() {
			if log, err := os.ReadFile(e.serverLog); err == nil {
				t.Logf("conmond log (%s):\n%s", e.serverLog, log)
			}
			t.Logf("kept %s for inspection", e.tmp)
			return
		}
		_ = os.RemoveAll(e.tmp)
	})
}

// openServerLog creates the file conmond logs to. An *os.File is handed to conmond as is (no
// copying goroutine), so client.New returns as soon as conmond's parent exits although the
// daemon keeps the file open.
func (e *env) openServerLog(t *testing.T) *os.File {
	serverLog, err := os.Create(e.serverLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serverLog.Close() })
	return serverLog
}
