//go:build !conmonrs_v06

package interop

// The streaming server (Serve* RPCs, which conmon-rs v1.0 added; CRI-O 1.34 with client
// v0.6.6 serves streams itself), through Kubernetes' own client: client-go's websocket
// executor, as kubectl and the API server use it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/conmon-rs/pkg/client"
	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// streamURL runs a streaming exec or attach URL with client-go's websocket
// executor speaking protocol, writing stdin (if not empty) then closing it.
// It returns what arrived on stdout and stderr and the executor's error (a
// utilexec.CodeExitError for a non-zero exit).
func streamURL(ctx context.Context, url, protocol, stdin string, tty bool) (string, string, error) {
	executor, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, "GET", url, protocol)
	if err != nil {
		return "", "", err
	}
	return stream(ctx, executor, stdin, tty)
}

// stream runs executor's session as streamURL describes.
func stream(ctx context.Context, executor remotecommand.Executor, stdin string, tty bool) (string, string, error) {
	var stdout, stderr bytes.Buffer
	options := remotecommand.StreamOptions{Stdout: &stdout, Tty: tty}
	if !tty {
		options.Stderr = &stderr
	}
	if stdin != "" {
		options.Stdin = strings.NewReader(stdin)
	}
	err := executor.StreamWithContext(ctx, options)
	return stdout.String(), stderr.String(), err
}

// lockedBuffer collects a stream that is read while it is written.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// executors are client-go's executors for a streaming URL, one per transport: the
// websocket one (v4, as kubelet's older clients) and the SPDY one.
var executors = []struct {
	name string
	new  func(t *testing.T, url string) remotecommand.Executor
}{
	{"websocket", func(t *testing.T, url string) remotecommand.Executor {
		t.Helper()
		executor, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, "GET", url, "v4.channel.k8s.io")
		if err != nil {
			t.Fatalf("websocket executor: %v", err)
		}
		return executor
	}},
	{"SPDY", spdyExecutor},
}

// attachment is an attach session running in the background.
type attachment struct {
	out    lockedBuffer // the container's stdout and stderr
	cancel context.CancelFunc
	ended  chan struct{} // closed when the session has ended, with err
	err    error
}

// attach runs executor's attach session until ctx ends, stop is called or the test finishes.
func attach(ctx context.Context, t *testing.T, executor remotecommand.Executor) *attachment {
	a := &attachment{ended: make(chan struct{})}
	ctx, a.cancel = context.WithCancel(ctx)
	go func() {
		defer close(a.ended)
		a.err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &a.out, Stderr: &a.out})
	}()
	t.Cleanup(func() { _ = a.stop(t) })
	return a
}

// output returns what arrived so far; the test fails if the session ended, which only
// stop may end.
func (a *attachment) output(t *testing.T) string {
	t.Helper()
	select {
	case <-a.ended:
		t.Fatalf("attach stream ended early: %v (output %q)", a.err, a.out.String())
	default:
	}
	return a.out.String()
}

// stop cancels the session and returns how it ended; the test fails if it does not end.
func (a *attachment) stop(t *testing.T) error {
	a.cancel()
	select {
	case <-a.ended:
		return a.err
	case <-time.After(pollTimeout):
		t.Errorf("attach stream did not end after its context was cancelled")
		return nil
	}
}

// portForwardURL opens a port-forward URL with a plain websocket client and
// returns every binary message until the server closes the session.
func portForwardURL(url, protocol string) ([][]byte, error) {
	dialer := websocket.Dialer{HandshakeTimeout: rpcTimeout}
	if protocol != "" {
		dialer.Subprotocols = []string{protocol}
	}
	conn, response, err := dialer.Dial(strings.Replace(url, "http://", "ws://", 1), nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w (response %v)", url, err, response)
	}
	defer conn.Close()
	if got := conn.Subprotocol(); got != protocol {
		return nil, fmt.Errorf("server chose subprotocol %q, want %q", got, protocol)
	}
	var messages [][]byte
	for {
		if err := conn.SetReadDeadline(time.Now().Add(rpcTimeout)); err != nil {
			return messages, err
		}
		kind, data, err := conn.ReadMessage()
		if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			return messages, nil
		}
		if err != nil {
			return messages, err
		}
		switch {
		case kind == websocket.BinaryMessage:
			messages = append(messages, data)
		case kind == websocket.TextMessage && strings.Contains(protocol, "base64") && len(data) > 0:
			// The channel as a digit, then base64: returned in the binary form.
			decoded, err := base64.StdEncoding.DecodeString(string(data[1:]))
			if err != nil {
				return messages, fmt.Errorf("base64 message %q: %w", data, err)
			}
			messages = append(messages, append([]byte{data[0] - '0'}, decoded...))
		}
	}
}

// streamingChecks are TestConmond's Serve* subtests, run by check against the running
// container longID (PID longPID).
func streamingChecks(check func(string, func(*testing.T)), cl *client.ConmonClient, longID string, longPID int) {
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
	check("ServeExecContainerTty", func(t *testing.T) {
		for _, executor := range executors {
			ctx, cancel := rpcCtx()
			defer cancel()
			res, err := cl.ServeExecContainer(ctx, &client.ServeExecContainerConfig{
				ID: longID, Command: []string{"sh", "-c", "tty && echo on-a-tty"}, Tty: true, Stdout: true,
			})
			if err != nil {
				t.Fatalf("ServeExecContainer: %v", err)
			}
			stdout, _, err := stream(ctx, executor.new(t, res.URL), "", true)
			if err != nil || !strings.Contains(stdout, "/dev/pts/") || !strings.Contains(stdout, "on-a-tty\r\n") {
				t.Fatalf("tty exec over %s: stdout %q, error %v", executor.name, stdout, err)
			}
		}
	})
	check("ServeAttachContainer", func(t *testing.T) {
		for _, executor := range executors {
			ctx, cancel := rpcCtx()
			defer cancel()
			res, err := cl.ServeAttachContainer(ctx, &client.ServeAttachContainerConfig{
				ID: longID, Stdout: true, Stderr: true,
			})
			if err != nil {
				t.Fatalf("ServeAttachContainer: %v", err)
			}
			attached := attach(ctx, t, executor.new(t, res.URL))
			// Output written to the container's own stdout from now on reaches the client.
			line := fmt.Sprintf("attached over %s", executor.name)
			waitFor(t, pollTimeout, "container output on the attach stream over "+executor.name, func() (bool, string) {
				_, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
					ID: longID, Command: []string{"sh", "-c", fmt.Sprintf("echo '%s' > /proc/1/fd/1", line)}, Timeout: 5,
				})
				if err != nil {
					return false, err.Error()
				}
				out := attached.output(t)
				return strings.Contains(out, line+"\n"), out
			})
			if err := attached.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("attach over %s ended with %v, want the cancellation", executor.name, err)
			}
		}
	})
	check("ServePortForwardContainer", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		// Nothing listens on port 9 in the container: kubelet's protocol answers with the
		// port on both channels, then the error on the error channel, then closes. Each
		// subprotocol kubelet's library serves, with its `port` parameter; `ports` too.
		forwards := []struct{ query, protocol string }{
			{"?port=9", "v4.channel.k8s.io"},
			{"?port=9", "v4.base64.channel.k8s.io"},
			{"?port=9", "v5.channel.k8s.io"},
			{"?port=9", ""},
			{"?ports=9", "v4.channel.k8s.io"},
		}
		for _, forward := range forwards {
			messages, err := portForwardURL(servePortForward(ctx, t, cl, longPID)+forward.query, forward.protocol)
			if err != nil {
				t.Fatalf("port-forward %+v: %v", forward, err)
			}
			if len(messages) != 3 || string(messages[0]) != "\x00\x09\x00" || string(messages[1]) != "\x01\x09\x00" ||
				!strings.Contains(string(messages[2]), "error forwarding port 9") {
				t.Fatalf("port-forward %+v messages: %q", forward, messages)
			}
		}
		// Two ports, neither listened on: the i-th port's data and error channels are 2i and
		// 2i+1, each opened with the port; each error arrives on its port's error channel.
		messages, err := portForwardURL(servePortForward(ctx, t, cl, longPID)+"?port=9,10", "v4.channel.k8s.io")
		if err != nil {
			t.Fatalf("port-forward ?port=9,10: %v", err)
		}
		opened := []string{"\x00\x09\x00", "\x01\x09\x00", "\x02\x0a\x00", "\x03\x0a\x00"}
		if len(messages) != 6 || !slices.EqualFunc(messages[:4], opened, func(m []byte, o string) bool { return string(m) == o }) {
			t.Fatalf("port-forward ?port=9,10 messages: %q", messages)
		}
		// The protocol does not order the two errors.
		errs := map[byte]string{}
		for _, message := range messages[4:] {
			if len(message) > 0 {
				errs[message[0]] = string(message[1:])
			}
		}
		if !strings.Contains(errs[1], "error forwarding port 9 ") || !strings.Contains(errs[3], "error forwarding port 10 ") {
			t.Fatalf("port-forward ?port=9,10 errors: %q", messages[4:])
		}
	})
	spdyChecks(check, cl, longID, longPID)
}

// servePortForward returns a fresh port-forward URL for longPID's network namespace (a URL
// serves one session).
func servePortForward(ctx context.Context, t *testing.T, cl *client.ConmonClient, longPID int) string {
	t.Helper()
	res, err := cl.ServePortForwardContainer(ctx, &client.ServePortForwardContainerConfig{
		NetNsPath: fmt.Sprintf("/proc/%d/ns/net", longPID),
	})
	if err != nil {
		t.Fatalf("ServePortForwardContainer: %v", err)
	}
	return res.URL
}
