package interop

// TestGoldenCapture sends one request of each method conmon-rs's Go client v1.0.1 knows,
// with fixed field values, through a recording relay (relay_test.go), and keeps each request
// message and the server's answer.
//
// Normal run (against conmond): every captured request must equal, in canonical form, the
// committed fixture in proto/tests/fixtures/v1.0.1/requests, so the relay and the fixtures
// stay in step with the pinned client.
//
// Capture run: with CONMON_GOLDEN_CAPTURE=<dir> it writes <dir>/requests/<name>.bin and, for
// the answers worth keeping, <dir>/responses/<name>.bin. Point CONMOND_BINARY at conmon-rs's
// own server to capture its responses (see proto/tests/fixtures/README.md).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containers/conmon-rs/pkg/client"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.podman.io/common/pkg/resize"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"
)

const (
	// Every path in a captured request lives here, so requests are the same on every run.
	goldenDir      = "/tmp/conmon-golden"
	goldenFixtures = "../../proto/tests/fixtures/v1.0.1/requests"
	goldenID       = "golden-ctr"
	// The W3C trace context each request carries as metadata.
	goldenTraceID = "0af7651916cd43dd8448eb211c80319c"
	goldenSpanID  = "b7ad6b7169203331"
)

// Conmon method ordinals.
const (
	methodVersion uint16 = iota
	methodCreateContainer
	methodExecSync
	methodAttach
	methodReopenLog
	methodSetWindowSize
	methodCreateNamespaces
	methodStartFdSocket
	methodServeExec
	methodServeAttach
	methodServePortForward
)

// goldenCall is one captured call: what to send and what the Go client must get back.
type goldenCall struct {
	name     string
	method   uint16
	response bool // keep the server's answer as a fixture too
	run      func(ctx context.Context, cl *client.ConmonClient) error
}

func goldenPath(name string) string { return filepath.Join(goldenDir, name) }

// goldenCalls lists the calls in order; note records what the Go client made of each answer.
func goldenCalls(e *env, note func(format string, args ...any)) []goldenCall {
	id := goldenID
	return []goldenCall{
		{"version", methodVersion, true, func(ctx context.Context, cl *client.ConmonClient) error {
			v, err := cl.Version(ctx, &client.VersionConfig{})
			if err == nil {
				note("%+v", *v)
			}
			return err
		}},
		// Request only: the verbose answer embeds the server's whole dependency tree.
		{"version_verbose", methodVersion, false, func(ctx context.Context, cl *client.ConmonClient) error {
			_, err := cl.Version(ctx, &client.VersionConfig{Verbose: true})
			return err
		}},
		{"create_container", methodCreateContainer, true, func(ctx context.Context, cl *client.ConmonClient) error {
			e.containers = append(e.containers, id)
			resp, err := cl.CreateContainer(ctx, &client.CreateContainerConfig{
				ID:           id,
				BundlePath:   goldenPath("bundles/" + id),
				Stdin:        true,
				ExitPaths:    []string{goldenPath(id + ".exit"), goldenPath(id + ".exit2")},
				OOMExitPaths: []string{goldenPath(id + ".oom")},
				LogDrivers: []client.ContainerLogDriver{
					{Type: client.LogDriverTypeContainerRuntimeInterface, Path: goldenPath(id + ".log"), MaxSize: 1 << 20},
					{Type: client.LogDriverTypeJSONLogger, Path: goldenPath(id + ".json")},
				},
				CleanupCmd:  []string{"/bin/true", "cleanup"},
				GlobalArgs:  []string{"--log-format", "json"},
				CommandArgs: []string{"--no-pivot"},
				EnvVars:     map[string]string{"GOLDEN_ENV": "golden-value"},
			})
			if err != nil {
				return err
			}
			note("PID=%d", resp.PID)
			if resp.PID == 0 {
				return fmt.Errorf("container PID 0")
			}
			if out, err := e.runcCmd("start", id); err != nil {
				return fmt.Errorf("runc start: %v: %s", err, out)
			}
			return nil
		}},
		// Fails on every server: no fd was sent to those slots, and the bundle does not exist.
		{"create_container_fds", methodCreateContainer, true, func(ctx context.Context, cl *client.ConmonClient) error {
			_, err := cl.CreateContainer(ctx, &client.CreateContainerConfig{
				ID:            "golden-fds",
				BundlePath:    goldenPath("bundles/missing"),
				AdditionalFDs: []client.RemoteFD{7},
				LeakFDs:       []client.RemoteFD{8, 9},
			})
			note("error: %v", err)
			return wantError(err, "")
		}},
		{"exec_sync", methodExecSync, true, func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
				ID:      id,
				Command: []string{"sh", "-c", "echo out; echo err >&2; exit 7"},
				Timeout: 20,
				EnvVars: map[string]string{"EXEC_ENV": "exec-value"},
			})
			if err != nil {
				return err
			}
			note("%+v", *res)
			if res.ExitCode != 7 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.TimedOut {
				return fmt.Errorf("exec result %+v", res)
			}
			return nil
		}},
		{"exec_sync_timeout", methodExecSync, true, func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
				ID: id, Command: []string{"sleep", "30"}, Timeout: 1, Terminal: true,
			})
			if err != nil {
				return err
			}
			note("%+v", *res)
			if !res.TimedOut {
				return fmt.Errorf("exec result %+v, want timed out", res)
			}
			return nil
		}},
		{"attach", methodAttach, true, func(ctx context.Context, cl *client.ConmonClient) error {
			return cl.AttachContainer(ctx, &client.AttachConfig{
				ID:                id,
				SocketPath:        goldenPath("attach.sock"),
				ExecSession:       "golden-exec",
				StopAfterStdinEOF: true,
				Passthrough:       true, // the client returns after the RPC
			})
		}},
		{"reopen_log", methodReopenLog, true, func(ctx context.Context, cl *client.ConmonClient) error {
			return cl.ReopenLogContainer(ctx, &client.ReopenLogContainerConfig{ID: id})
		}},
		// Fails on every server: the container has no terminal.
		{"set_window_size", methodSetWindowSize, true, func(ctx context.Context, cl *client.ConmonClient) error {
			err := cl.SetWindowSizeContainer(ctx, &client.SetWindowSizeContainerConfig{
				ID: id, Size: &resize.TerminalSize{Width: 132, Height: 43},
			})
			note("error: %v", err)
			return wantError(err, "no terminal")
		}},
		// No user namespace: conmon-rs v1.0.1's pause helper hangs creating one here, and
		// without it the client sends no ID mappings.
		{"create_namespaces", methodCreateNamespaces, true, func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.CreateNamespaces(ctx, &client.CreateNamespacesConfig{
				Namespaces: []client.Namespace{client.NamespaceIPC, client.NamespaceNet, client.NamespaceUTS},
				IDMappings: idtools.NewIDMappingsFromMaps(
					[]idtools.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
					[]idtools.IDMap{{ContainerID: 0, HostID: 200000, Size: 65536}},
				),
				BasePath: goldenPath("ns"),
				PodID:    "golden-pod",
			})
			if err == nil {
				for _, ns := range res.Namespaces {
					note("%+v", *ns)
				}
			}
			return allowUnimplemented(err)
		}},
		{"start_fd_socket", methodStartFdSocket, true, func(ctx context.Context, cl *client.ConmonClient) error {
			fds, err := cl.RemoteFDs(ctx)
			if err == nil {
				note("fd socket dialed")
				return fds.Close()
			}
			return allowUnimplemented(err)
		}},
		{"serve_exec", methodServeExec, true, func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ServeExecContainer(ctx, &client.ServeExecContainerConfig{
				// Alternating flags, so swapping two adjacent fields shows.
				ID: id, Command: []string{"sh", "-c", "echo served"}, Tty: true, Stdin: false, Stdout: true, Stderr: false,
			})
			return wantURL(res, err, note, func(r *client.ServeExecContainerResult) string { return r.URL })
		}},
		{"serve_attach", methodServeAttach, true, func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ServeAttachContainer(ctx, &client.ServeAttachContainerConfig{
				ID: id, Stdin: true, Stdout: false, Stderr: true,
			})
			return wantURL(res, err, note, func(r *client.ServeAttachContainerResult) string { return r.URL })
		}},
		{"serve_port_forward", methodServePortForward, true, func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ServePortForwardContainer(ctx, &client.ServePortForwardContainerConfig{
				NetNsPath: "/proc/1/ns/net",
			})
			return wantURL(res, err, note, func(r *client.ServePortForwardContainerResult) string { return r.URL })
		}},
	}
}

func wantError(err error, contains string) error {
	if err == nil {
		return fmt.Errorf("succeeded, want an error")
	}
	if !strings.Contains(err.Error(), contains) {
		return fmt.Errorf("error %q does not contain %q", err, contains)
	}
	return nil
}

// allowUnimplemented accepts success and conmond's "not implemented" answer.
func allowUnimplemented(err error) error {
	if err != nil && !strings.Contains(err.Error(), "not implemented") {
		return err
	}
	return nil
}

func wantURL[T any](res *T, err error, note func(string, ...any), url func(*T) string) error {
	if err != nil {
		return err
	}
	note("URL=%s", url(res))
	if !strings.HasPrefix(url(res), "http://") {
		return fmt.Errorf("URL %q", url(res))
	}
	return nil
}

func TestGoldenCapture(t *testing.T) {
	e := requirements(t)
	captureDir := os.Getenv("CONMON_GOLDEN_CAPTURE")
	if captureDir != "" {
		var err error
		if captureDir, err = filepath.Abs(captureDir); err != nil {
			t.Fatal(err)
		}
	}
	// Fixed paths instead of requirements' random directory.
	_ = os.RemoveAll(e.tmp)
	unmountUnder(goldenDir)
	if err := os.RemoveAll(goldenDir); err != nil {
		t.Fatalf("remove %s left by an earlier run: %v", goldenDir, err)
	}
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.tmp = goldenDir
	e.runDir, e.runtimeRoot, e.serverLog = goldenPath("run"), goldenPath("runc"), goldenPath("server.log")

	var (
		cl       *client.ConmonClient
		shutDown bool
	)
	e.registerCleanup(t, &cl, &shutDown)
	t.Cleanup(func() { unmountUnder(goldenDir) }) // before registerCleanup removes the tree
	serverLog := e.openServerLog(t)
	e.bundle(t, goldenID, "sh", "-c", "echo first; exec sleep 1000")

	// setMetadata only sends metadata when the client started the server with tracing on, and
	// then injects the span context of the call's ctx with the global propagator.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	cfg := e.config()
	cfg.Stdout, cfg.Stderr = serverLog, serverLog
	cfg.Tracing = &client.Tracing{Enabled: true, Endpoint: "http://127.0.0.1:9"}
	var err error
	if cl, err = client.New(cfg); err != nil {
		t.Fatalf("client.New (spawning %s): %v", e.conmond, err)
	}

	// Put the relay where the client dials: move the server's socket aside (it keeps
	// listening on the renamed inode), then make the client drop its open connection.
	socket := filepath.Join(e.runDir, "conmon.sock")
	realSocket := filepath.Join(e.runDir, "conmon-real.sock")
	if err := os.Rename(socket, realSocket); err != nil {
		t.Fatal(err)
	}
	relay := startRelay(t, socket, realSocket)
	ctx, cancel := context.WithTimeout(goldenContext(), rpcTimeout)
	defer cancel()
	if err := cl.ReopenLogContainer(ctx, &client.ReopenLogContainerConfig{ID: "golden-missing"}); err == nil {
		t.Fatal("reopenLog of an unknown container succeeded; the client would keep its direct connection")
	}

	captured := map[string]exchange{}
	var clientView strings.Builder
	calls := goldenCalls(e, func(format string, args ...any) {
		fmt.Fprintf(&clientView, format+"\n", args...)
	})
	for _, call := range calls {
		fmt.Fprintf(&clientView, "%s:\n", call.name)
		mark := relay.mark()
		ctx, cancel := context.WithTimeout(goldenContext(), rpcTimeout)
		err := call.run(ctx, cl)
		cancel()
		switch {
		case err != nil && captureDir != "":
			t.Fatalf("%s: %v", call.name, err)
		case err != nil:
			// Answers may differ from conmon-rs's (conmond checks the exec session of an
			// attach, for one); TestConmond checks them. Here only the request matters.
			t.Logf("%s: conmond answered differently from the capture: %v", call.name, err)
		}
		ex, err := findExchange(relay.since(mark), call.method)
		if err != nil {
			t.Fatalf("%s: %v", call.name, err)
		}
		if ex.retErr != "" {
			t.Logf("%s: server answered with exception %q", call.name, ex.retErr)
		}
		captured[call.name] = ex
	}
	for _, err := range relay.errors() {
		t.Errorf("%v", err)
	}

	shutDown = true
	if err := cl.Shutdown(); err != nil {
		t.Errorf("shutdown: %v", err)
	}

	if captureDir != "" {
		writeGolden(t, captureDir, calls, captured)
		// What the Go client decoded from each answer: the expected values of the response
		// fixtures, from a decoder that is not ours.
		view := filepath.Join(captureDir, "responses", "client-view.txt")
		if err := os.WriteFile(view, []byte(clientView.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, call := range calls {
		compareGolden(t, call.name, captured[call.name].call)
	}
}

// goldenContext carries a fixed remote span context, so the injected traceparent is fixed.
func goldenContext() context.Context {
	traceID, _ := trace.TraceIDFromHex(goldenTraceID)
	spanID, _ := trace.SpanIDFromHex(goldenSpanID)
	return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
}

func writeGolden(t *testing.T, dir string, calls []goldenCall, captured map[string]exchange) {
	t.Helper()
	for _, sub := range []string{"requests", "responses"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, call := range calls {
		ex := captured[call.name]
		write := func(sub string, raw []byte) {
			path := filepath.Join(dir, sub, call.name+".bin")
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", path, len(raw))
		}
		write("requests", ex.call)
		if call.response {
			write("responses", ex.ret)
		}
	}
}

// compareGolden checks a captured request against the committed fixture of the same name.
func compareGolden(t *testing.T, name string, raw []byte) {
	t.Helper()
	path := filepath.Join(goldenFixtures, name+".bin")
	fixture, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v (re-capture the fixtures, see proto/tests/fixtures/README.md)", name, err)
		return
	}
	want, err := callParams(fixture)
	if err != nil {
		t.Errorf("%s: fixture %s: %v", name, path, err)
		return
	}
	got, err := callParams(raw)
	if err != nil {
		t.Errorf("%s: captured request: %v", name, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: the Go client's request differs from %s", name, path)
	}
}

// unmountUnder detaches the namespace bind mounts a createNamespaces call left below dir.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			_ = unix.Unmount(fields[4], unix.MNT_DETACH)
		}
	}
}
