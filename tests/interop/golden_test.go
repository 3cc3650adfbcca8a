package interop

// TestGoldenCapture sends one request of each method the Go client in use (clientVersion)
// knows, with fixed field values, through a recording relay (relay_test.go), and keeps each
// request message and the server's answer. A second client, which joins the running server
// and so runs without tracing, sends the *_untraced requests: no metadata at all.
//
// Normal run (against conmond): every captured request must equal, in canonical form, the
// committed fixture in proto/tests/fixtures/<clientVersion>/requests, so the relay and the
// fixtures stay in step with the pinned client.
//
// Capture runs (see proto/tests/fixtures/README.md):
//   - CONMON_GOLDEN_CAPTURE=<dir>, against conmon-rs's own server (CONMOND_BINARY): every call
//     must succeed or fail as it does there; writes <dir>/requests/<name>.bin and, for the
//     answers worth keeping, <dir>/responses/<name>.bin and responses/client-view.txt.
//   - CONMON_GOLDEN_CAPTURE_REQUESTS=<dir>, against any server (requests do not depend on it,
//     and conmond answers some calls differently): writes only <dir>/requests/<name>.bin.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containers/conmon-rs/pkg/client"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"
)

func TestGoldenCapture(t *testing.T) {
	e := requirements(t)
	captureDir, responses := captureTarget(t)
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
	e.bundle(t, goldenUntracedID, "sh", "-c", "echo first; exec sleep 1000")

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
	// listening on the renamed inode), then make the client drop its open connection
	// (v1.0.1 keeps one and dials again after an error; v0.6.6 dials for every call).
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

	// Both client generations turn tracing on only when they spawn the server, so a client
	// that finds it running (as CRI-O's after a restart) sends requests without metadata.
	untraced, err := client.New(e.config())
	if err != nil {
		t.Fatalf("client.New joining the running server: %v", err)
	}
	if untraced.PID() != cl.PID() {
		t.Fatalf("the untraced client runs with server PID %d, want %d", untraced.PID(), cl.PID())
	}

	captured := map[string]exchange{}
	var clientView strings.Builder
	calls := goldenCalls(e, func(format string, args ...any) {
		fmt.Fprintf(&clientView, format+"\n", args...)
	})
	for _, call := range calls {
		if !call.untraced { // no answer kept, nothing to view
			fmt.Fprintf(&clientView, "%s:\n", call.name)
		}
		mark := relay.mark()
		ctx, cancel := context.WithTimeout(goldenContext(), rpcTimeout)
		sender := cl
		if call.untraced {
			sender = untraced
		}
		err := call.run(ctx, sender)
		cancel()
		if errors.Is(err, client.ErrUnsupported) {
			// The client checked the server's version and sent nothing (v0.6.6 sends
			// createNamespaces only to a server that reports 0.5.0 or later): no request to
			// keep or compare. Printed, so it does not pass unnoticed.
			msg := fmt.Sprintf("NOT SENT %s: the %s client refused it: %v", call.name, clientVersion, err)
			fmt.Println(msg)
			t.Log(msg)
			continue
		}
		switch {
		case err != nil && responses:
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
		writeGolden(t, captureDir, calls, captured, responses)
		if responses {
			// What the Go client decoded from each answer: the expected values of the response
			// fixtures, from a decoder that is not ours.
			view := filepath.Join(captureDir, "responses", "client-view.txt")
			if err := os.WriteFile(view, []byte(clientView.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for _, call := range calls {
		if ex, ok := captured[call.name]; ok {
			compareGolden(t, call.name, ex.call)
		}
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

// captureTarget returns the capture directory of a capture run ("" otherwise) and whether the
// run keeps responses too (CONMON_GOLDEN_CAPTURE) or only requests.
func captureTarget(t *testing.T) (string, bool) {
	t.Helper()
	dir, responses := os.Getenv("CONMON_GOLDEN_CAPTURE"), true
	if requests := os.Getenv("CONMON_GOLDEN_CAPTURE_REQUESTS"); requests != "" {
		if dir != "" {
			t.Fatal("set CONMON_GOLDEN_CAPTURE or CONMON_GOLDEN_CAPTURE_REQUESTS, not both")
		}
		dir, responses = requests, false
	}
	if dir == "" {
		return "", false
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs, responses
}

func writeGolden(t *testing.T, dir string, calls []goldenCall, captured map[string]exchange, responses bool) {
	t.Helper()
	subs := []string{"requests"}
	if responses {
		subs = append(subs, "responses")
	}
	for _, sub := range subs {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, call := range calls {
		ex, ok := captured[call.name]
		if !ok {
			continue // not sent
		}
		write := func(sub string, raw []byte) {
			path := filepath.Join(dir, sub, call.name+".bin")
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", path, len(raw))
		}
		write("requests", ex.call)
		if responses && call.response {
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
