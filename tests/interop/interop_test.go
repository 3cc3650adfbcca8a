// Interop tests: drive conmond through conmon-rs's own Go client
// (github.com/containers/conmon-rs/pkg/client, the package CRI-O links), so that
// wire compatibility is checked against the real consumer rather than against our
// own schema bindings.
//
// Requirements: root, runc at $RUNTIME_BINARY (default /usr/sbin/runc), a static
// busybox at $BUSYBOX_BINARY (default /usr/bin/busybox) and a built conmond at
// $CONMOND_BINARY (default ../../target/debug/conmond relative to this directory).
//
// The streaming URLs (Serve* RPCs) are driven with Kubernetes' own websocket
// client, client-go's remotecommand executor.
//
// Every RPC conmond does not implement yet must answer with an error containing
// "not implemented"; such calls print "PENDING <CallName>: not implemented by
// conmond yet". Once conmond implements one and the call succeeds, its subtest
// still passes (and prints "IMPLEMENTED <CallName>").
package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containers/conmon-rs/pkg/client"
	"go.podman.io/common/pkg/resize"
	"golang.org/x/sys/unix"
	utilexec "k8s.io/client-go/util/exec"
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

// pending checks a call conmond does not implement yet: it must fail with a
// "not implemented" error. If it succeeds, conmond has implemented it and the
// subtest passes so long as success checks whatever the call returned.
func pending(t *testing.T, call string, err error, onSuccess func() error) {
	t.Helper()
	switch {
	case err == nil:
		if onSuccess != nil {
			if err := onSuccess(); err != nil {
				t.Fatalf("%s succeeded but returned a bad result: %v", call, err)
			}
		}
		msg := fmt.Sprintf("IMPLEMENTED %s: conmond answered it successfully", call)
		fmt.Println(msg)
		t.Log(msg)
	case strings.Contains(err.Error(), "not implemented"):
		msg := fmt.Sprintf("PENDING %s: not implemented by conmond yet", call)
		fmt.Println(msg)
		t.Logf("%s (error: %v)", msg, err)
	default:
		t.Fatalf("%s failed with an error that is not \"not implemented\": %v", call, err)
	}
}

func TestConmond(t *testing.T) {
	e := requirements(t)

	var (
		cl        *client.ConmonClient
		serverPID int
		shutDown  bool
	)
	e.registerCleanup(t, &cl, &shutDown)

	serverLog := e.openServerLog(t)

	// step runs one subtest and stops the whole sequence if it failed, since
	// later steps depend on earlier ones.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	// check runs an independent subtest: later steps go on if it fails.
	check := func(name string, f func(t *testing.T)) { t.Run(name, f) }

	step("New", func(t *testing.T) {
		cfg := e.config()
		cfg.Stdout, cfg.Stderr = serverLog, serverLog
		var err error
		cl, err = client.New(cfg)
		if err != nil {
			t.Fatalf("client.New (spawning %s): %v", e.conmond, err)
		}
		serverPID = int(cl.PID())
		if serverPID <= 0 {
			t.Fatalf("client reports server PID %d", serverPID)
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", serverPID))
		if err != nil {
			t.Fatalf("server PID %d: %v", serverPID, err)
		}
		if filepath.Base(exe) != filepath.Base(e.conmond) {
			t.Fatalf("server PID %d runs %s, want %s", serverPID, exe, e.conmond)
		}
		t.Logf("conmond running as PID %d, socket %s", serverPID, filepath.Join(e.runDir, "conmon.sock"))
	})

	step("NewReusesRunningServer", func(t *testing.T) {
		cfg := e.config()
		cfg.Stdout, cfg.Stderr = serverLog, serverLog
		cl2, err := client.New(cfg)
		if err != nil {
			t.Fatalf("second client.New: %v", err)
		}
		if got := int(cl2.PID()); got != serverPID {
			t.Fatalf("second client.New started or found PID %d, want the running server %d", got, serverPID)
		}
		checkServerPID(t, cl2, serverPID)
	})

	check("Version", func(t *testing.T) {
		for _, verbose := range []bool{false, true} {
			ctx, cancel := rpcCtx()
			v, err := cl.Version(ctx, &client.VersionConfig{Verbose: verbose})
			cancel()
			if err != nil {
				t.Fatalf("Version(verbose=%v): %v", verbose, err)
			}
			if int(v.ProcessID) != serverPID {
				t.Errorf("Version(verbose=%v): ProcessID %d, want %d", verbose, v.ProcessID, serverPID)
			}
			if v.Version == "" {
				t.Errorf("Version(verbose=%v): empty version", verbose)
			}
			t.Logf("Version(verbose=%v): version=%q tag=%q commit=%q target=%q rust=%q cargo tree %d bytes",
				verbose, v.Version, v.Tag, v.Commit, v.Target, v.RustVersion, len(v.CargoTree))
		}
	})

	check("CreateContainerExitAndCRILog", func(t *testing.T) {
		id := fmt.Sprintf("interop-%d-exit", os.Getpid())
		bundle := e.bundle(t, id, "sh", "-c", "echo hello; exit 3")
		exitFile := filepath.Join(e.tmp, id+".exit")
		logFile := filepath.Join(e.tmp, id+".log")
		ctx, cancel := rpcCtx()
		defer cancel()
		e.containers = append(e.containers, id)
		resp, err := cl.CreateContainer(ctx, &client.CreateContainerConfig{
			ID:         id,
			BundlePath: bundle,
			ExitPaths:  []string{exitFile},
			LogDrivers: []client.ContainerLogDriver{{
				Type: client.LogDriverTypeContainerRuntimeInterface,
				Path: logFile,
			}},
		})
		if err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		if resp.PID == 0 {
			t.Fatalf("CreateContainer: container PID 0")
		}
		e.start(t, id)
		waitFor(t, pollTimeout, "exit file "+exitFile, func() (bool, string) {
			data, err := os.ReadFile(exitFile)
			if err != nil {
				return false, err.Error()
			}
			return true, string(data)
		})
		data, err := os.ReadFile(exitFile)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(data)); got != "3" {
			t.Errorf("exit file holds %q, want \"3\"", data)
		}
		waitFor(t, pollTimeout, "CRI log line", func() (bool, string) {
			return fileContains(logFile, "stdout F hello")
		})
	})

	// A long-running container for exec, log reopening and the pending calls.
	longID := fmt.Sprintf("interop-%d-long", os.Getpid())
	longLog := filepath.Join(e.tmp, longID+".log")
	var longPID int
	step("CreateLongRunningContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		longPID = e.createRunning(ctx, t, cl, longID, longLog, "echo first; exec sleep 1000")
		waitFor(t, pollTimeout, "first CRI log line", func() (bool, string) {
			return fileContains(longLog, "stdout F first")
		})
	})

	check("ExecSyncContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
			ID:      longID,
			Command: []string{"sh", "-c", "echo out; echo err >&2; exit 7"},
			Timeout: 20,
		})
		if err != nil {
			t.Fatalf("ExecSyncContainer: %v", err)
		}
		if res.ExitCode != 7 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.TimedOut {
			t.Fatalf("ExecSyncContainer: exit %d stdout %q stderr %q timedOut %v; want 7 \"out\\n\" \"err\\n\" false",
				res.ExitCode, res.Stdout, res.Stderr, res.TimedOut)
		}

		res, err = cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{ID: longID, Command: []string{"true"}})
		if err != nil {
			t.Fatalf("ExecSyncContainer(true): %v", err)
		}
		if res.ExitCode != 0 || len(res.Stdout) != 0 || len(res.Stderr) != 0 || res.TimedOut {
			t.Fatalf("ExecSyncContainer(true): %+v", res)
		}
	})

	check("ExecSyncContainerTimeout", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		began := time.Now()
		res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
			ID:      longID,
			Command: []string{"sleep", "30"},
			Timeout: 1,
		})
		took := time.Since(began)
		if err != nil {
			t.Fatalf("ExecSyncContainer(sleep 30, timeout 1s): %v", err)
		}
		if !res.TimedOut {
			t.Fatalf("ExecSyncContainer(sleep 30, timeout 1s): TimedOut false: %+v", res)
		}
		if took > 15*time.Second {
			t.Fatalf("ExecSyncContainer(sleep 30, timeout 1s) took %v", took)
		}
		t.Logf("timed out after %v, exit code %d", took.Round(time.Millisecond), res.ExitCode)
	})

	check("ReopenLogContainer", func(t *testing.T) {
		rotated := longLog + ".1"
		if err := os.Rename(longLog, rotated); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := rpcCtx()
		defer cancel()
		if err := cl.ReopenLogContainer(ctx, &client.ReopenLogContainerConfig{ID: longID}); err != nil {
			t.Fatalf("ReopenLogContainer: %v", err)
		}
		if _, err := os.Stat(longLog); err != nil {
			t.Fatalf("after ReopenLogContainer: no new log file: %v", err)
		}
		// Write to the container's stdout (the init process's fd 1, a pipe to conmond).
		res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
			ID:      longID,
			Command: []string{"sh", "-c", "echo second > /proc/1/fd/1"},
			Timeout: 20,
		})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec writing to the container's stdout: %v %+v", err, res)
		}
		waitFor(t, pollTimeout, "second line in the reopened log", func() (bool, string) {
			return fileContains(longLog, "stdout F second")
		})
		old, err := os.ReadFile(rotated)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(old), "stdout F first") || strings.Contains(string(old), "second") {
			t.Fatalf("rotated log %s should hold only the first line: %q", rotated, old)
		}
	})

	check("AttachContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		socket := filepath.Join(e.runDir, "attach-"+longID)
		err := cl.AttachContainer(ctx, &client.AttachConfig{
			ID:          longID,
			SocketPath:  socket,
			Passthrough: true, // the client returns after the RPC without dialing the socket
		})
		if err != nil {
			t.Fatalf("AttachContainer: %v", err)
		}
		info, err := os.Stat(socket)
		if err != nil || info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o700 {
			t.Fatalf("attach socket %s: want a socket with mode 0700, got %v (%v)", socket, info, err)
		}
	})
	check("SetWindowSizeContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		// The long-running container has no terminal: resizing it must be a clear error.
		err := cl.SetWindowSizeContainer(ctx, &client.SetWindowSizeContainerConfig{
			ID:   longID,
			Size: &resize.TerminalSize{Width: 80, Height: 24},
		})
		if err == nil || !strings.Contains(err.Error(), "has no terminal") {
			t.Fatalf("resize of a container without terminal: want a \"has no terminal\" error, got %v", err)
		}
	})
	// Calls conmond does not implement yet.
	check("CreateNamespaces", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		nsDir := filepath.Join(e.tmp, "ns")
		res, err := cl.CreateNamespaces(ctx, &client.CreateNamespacesConfig{
			Namespaces: []client.Namespace{client.NamespaceIPC, client.NamespaceUTS},
			BasePath:   nsDir,
			PodID:      fmt.Sprintf("interop-%d-pod", os.Getpid()),
		})
		pending(t, "CreateNamespaces", err, func() error {
			for _, ns := range res.Namespaces {
				_ = unix.Unmount(ns.Path, unix.MNT_DETACH)
			}
			if len(res.Namespaces) == 0 {
				return errors.New("no namespaces returned")
			}
			return nil
		})
	})
	check("RemoteFDs", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		fds, err := cl.RemoteFDs(ctx) // the StartFdSocket RPC
		pending(t, "RemoteFDs/StartFdSocket", err, func() error { return fds.Close() })
	})
	// The streaming server, through Kubernetes' own client (client-go's websocket
	// executor, as kubectl and the API server use it).
	check("ServeExecContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		res, err := cl.ServeExecContainer(ctx, &client.ServeExecContainerConfig{
			ID: longID, Command: []string{"sh", "-c", "cat; echo to-stderr >&2; exit 3"},
			Stdin: true, Stdout: true, Stderr: true,
		})
		if err != nil {
			t.Fatalf("ServeExecContainer: %v", err)
		}
		stdout, stderr, err := streamURL(ctx, res.URL, "v5.channel.k8s.io", "via client-go\n", false)
		var exitErr utilexec.CodeExitError
		if !errors.As(err, &exitErr) || exitErr.Code != 3 {
			t.Fatalf("exec: want exit code 3, got %v", err)
		}
		if stdout != "via client-go\n" || stderr != "to-stderr\n" {
			t.Fatalf("exec: stdout %q, stderr %q", stdout, stderr)
		}
	})
	check("ServeExecContainerTtyV4", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		res, err := cl.ServeExecContainer(ctx, &client.ServeExecContainerConfig{
			ID: longID, Command: []string{"sh", "-c", "tty && echo on-a-tty"}, Tty: true, Stdout: true,
		})
		if err != nil {
			t.Fatalf("ServeExecContainer: %v", err)
		}
		stdout, _, err := streamURL(ctx, res.URL, "v4.channel.k8s.io", "", true)
		if err != nil || !strings.Contains(stdout, "/dev/pts/") || !strings.Contains(stdout, "on-a-tty\r\n") {
			t.Fatalf("tty exec over v4: stdout %q, error %v", stdout, err)
		}
	})
	check("ServeAttachContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		res, err := cl.ServeAttachContainer(ctx, &client.ServeAttachContainerConfig{
			ID: longID, Stdout: true, Stderr: true,
		})
		if err != nil {
			t.Fatalf("ServeAttachContainer: %v", err)
		}
		attached := attachURL(ctx, t, res.URL)
		// Output written to the container's own stdout from now on reaches the client.
		waitFor(t, pollTimeout, "container output on the attach stream", func() (bool, string) {
			_, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
				ID: longID, Command: []string{"sh", "-c", "echo attached-line > /proc/1/fd/1"}, Timeout: 5,
			})
			if err != nil {
				return false, err.Error()
			}
			out := attached.String()
			return strings.Contains(out, "attached-line\n"), out
		})
	})
	check("ServePortForwardContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		res, err := cl.ServePortForwardContainer(ctx, &client.ServePortForwardContainerConfig{
			NetNsPath: fmt.Sprintf("/proc/%d/ns/net", longPID),
		})
		if err != nil {
			t.Fatalf("ServePortForwardContainer: %v", err)
		}
		// Nothing listens on port 9 in the container: kubelet's protocol answers with the
		// port on both channels, then the error on the error channel, then closes.
		messages, err := portForwardURL(res.URL+"?ports=9", "v4.channel.k8s.io")
		if err != nil {
			t.Fatalf("port-forward: %v", err)
		}
		if len(messages) != 3 || string(messages[0]) != "\x00\x09\x00" || string(messages[1]) != "\x01\x09\x00" ||
			!strings.Contains(string(messages[2]), "error forwarding port 9") {
			t.Fatalf("port-forward messages: %q", messages)
		}
	})

	// After the pending calls: the server must still answer (an unimplemented
	// answer must not have broken it).
	check("VersionAfterPendingCalls", func(t *testing.T) {
		checkServerPID(t, cl, serverPID)
	})

	// Shutdown is client-side: SIGINT to the server PID, then poll kill(pid, 0)
	// until ESRCH. The daemon was reparented to this sandbox's PID 1, which reaps
	// orphans here, so no child subreaper is needed. Under a PID 1 that does not
	// reap, the exited daemon would stay a zombie that kill(pid, 0) still answers
	// and Shutdown would time out; the fix would then be to make this process a
	// subreaper (unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, ...)) and reap the
	// daemon PID with unix.Wait4.
	step("Shutdown", func(t *testing.T) {
		shutDown = true
		if err := cl.Shutdown(); err != nil {
			t.Fatalf("Shutdown (SIGINT to PID %d, wait for it to go away): %v", serverPID, err)
		}
		if err := syscall.Kill(serverPID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("server PID %d still exists after Shutdown (kill 0: %v)", serverPID, err)
		}
		if longPID > 0 {
			waitFor(t, pollTimeout, "container process "+strconv.Itoa(longPID)+" to be killed", func() (bool, string) {
				return processGone(longPID)
			})
		}
		if _, err := os.Stat(filepath.Join(e.runDir, "conmon.sock")); err == nil {
			t.Logf("note: %s still exists after shutdown", filepath.Join(e.runDir, "conmon.sock"))
		}
	})
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
