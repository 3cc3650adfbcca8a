// Interop tests: drive conmond through conmon-rs's own Go client
// (github.com/containers/conmon-rs/pkg/client, the package CRI-O links), so that
// wire compatibility is checked against the real consumer rather than against our
// own schema bindings.
//
// Requirements: root, runc at $RUNTIME_BINARY (default /usr/sbin/runc), a static
// busybox at $BUSYBOX_BINARY (default /usr/bin/busybox) and a built conmond at
// $CONMOND_BINARY (default ../../target/debug/conmond relative to this directory).
//
// The same tests run with two client generations: v1.0.1 (go.mod) and v0.6.6, the
// client of CRI-O ≤ 1.34 (go test -modfile=go.v0.6.mod -tags conmonrs_v06; run.sh runs
// both). client_v1_test.go and client_v06_test.go hold what differs.
//
// The streaming URLs (Serve* RPCs, v1.0 only) are driven with Kubernetes' own websocket
// client, client-go's remotecommand executor.
//
// Every RPC of the protocol is called, CreateNamespaces and StartFdSocket included.
package interop

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containers/conmon-rs/pkg/client"
	"golang.org/x/sys/unix"
)

// pending checks a call conmond does not implement yet: it must fail with a
// "not implemented" error, or the client must refuse to send it for the version
// conmond reports (v0.6.6 sends createNamespaces only to 0.5.0 or later). If it
// succeeds, conmond has implemented it and the subtest passes so long as success
// checks whatever the call returned.
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
			Size: terminalSize(80, 24),
		})
		if err == nil || !strings.Contains(err.Error(), "has no terminal") {
			t.Fatalf("resize of a container without terminal: want a \"has no terminal\" error, got %v", err)
		}
	})
	// Pins removed at shutdown (checked in the Shutdown step).
	var pins []string
	check("CreateNamespaces", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		nsDir := filepath.Join(e.tmp, "ns")
		podID := fmt.Sprintf("interop-%d-pod", os.Getpid())
		requested := map[client.Namespace]bool{client.NamespaceIPC: true, client.NamespaceUTS: true}
		res, err := cl.CreateNamespaces(ctx, &client.CreateNamespacesConfig{
			Namespaces: []client.Namespace{client.NamespaceIPC, client.NamespaceUTS},
			BasePath:   nsDir,
			PodID:      podID,
		})
		if err != nil {
			t.Fatalf("CreateNamespaces: %v", err)
		}
		order := []client.Namespace{client.NamespaceIPC, client.NamespacePID, client.NamespaceNet, client.NamespaceUser, client.NamespaceUTS}
		names := []string{"ipc", "pid", "net", "user", "uts"}
		if len(res.Namespaces) != len(order) {
			t.Fatalf("CreateNamespaces answered %d namespaces, want all 5", len(res.Namespaces))
		}
		for i, ns := range res.Namespaces {
			want := filepath.Join(nsDir, names[i]+"ns", podID)
			if ns.Type != order[i] || ns.Path != want {
				t.Fatalf("namespace %d: got %v at %s, want %v at %s", i, ns.Type, ns.Path, order[i], want)
			}
			pins = append(pins, ns.Path)
			var pin, host unix.Stat_t
			if err := unix.Stat(ns.Path, &pin); err != nil {
				t.Fatalf("stat %s: %v", ns.Path, err)
			}
			if err := unix.Stat("/proc/self/ns/"+names[i], &host); err != nil {
				t.Fatal(err)
			}
			if isNew := pin.Ino != host.Ino; isNew != requested[ns.Type] {
				t.Fatalf("%s: new namespace %v, requested %v", ns.Path, isNew, requested[ns.Type])
			}
		}
	})
	check("RemoteFDsIntoContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		fds, err := cl.RemoteFDs(ctx) // the StartFdSocket RPC
		if err != nil {
			t.Fatalf("RemoteFDs: %v", err)
		}
		defer fds.Close()
		var pipe [2]int
		if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		read := os.NewFile(uintptr(pipe[0]), "pipe-read")
		defer read.Close()
		slots, err := fds.Send(pipe[1], pipe[1])
		unix.Close(pipe[1])
		if err != nil || len(slots) != 2 {
			t.Fatalf("Send: slots %v, error %v", slots, err)
		}
		// fd 3 is the pipe (additional); the second copy is held by conmond (leaked)
		// until the container exits, so the pipe ends only then.
		id := fmt.Sprintf("interop-%d-fds", os.Getpid())
		bundle := e.bundle(t, id, "sh", "-c", "echo via-fd-3 >&3")
		e.containers = append(e.containers, id)
		if _, err := cl.CreateContainer(ctx, &client.CreateContainerConfig{
			ID:            id,
			BundlePath:    bundle,
			ExitPaths:     []string{filepath.Join(e.tmp, id+".exit")},
			AdditionalFDs: slots[:1],
			LeakFDs:       slots[1:],
		}); err != nil {
			t.Fatalf("CreateContainer with passed fds: %v", err)
		}
		e.start(t, id)
		if err := read.SetReadDeadline(time.Now().Add(pollTimeout)); err != nil {
			t.Logf("no read deadline on the pipe: %v", err)
		}
		got, err := io.ReadAll(read)
		if err != nil {
			t.Fatalf("read what the container wrote to fd 3: %v", err)
		}
		if want := "via-fd-3\n"; string(got) != want {
			t.Fatalf("container wrote %q to fd 3, want %q", got, want)
		}
	})
	// The Serve* subtests (streaming_test.go, v1.0 clients only).
	streamingChecks(check, cl, longID, longPID)

	// After every call: the server still answers.
	check("VersionAfterAllCalls", func(t *testing.T) {
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
		for _, pin := range pins {
			if _, err := os.Lstat(pin); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pinned namespace %s still there after shutdown (%v)", pin, err)
			}
		}
		if _, err := os.Stat(filepath.Join(e.runDir, "conmon.sock")); err == nil {
			t.Logf("note: %s still exists after shutdown", filepath.Join(e.runDir, "conmon.sock"))
		}
	})
}
