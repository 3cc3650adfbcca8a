package interop

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
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
	var stdout, stderr bytes.Buffer
	options := remotecommand.StreamOptions{Stdout: &stdout, Tty: tty}
	if !tty {
		options.Stderr = &stderr
	}
	if stdin != "" {
		options.Stdin = strings.NewReader(stdin)
	}
	err = executor.StreamWithContext(ctx, options)
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

// attachURL attaches to a streaming attach URL with client-go (v5) until ctx
// ends or the test finishes; the returned buffer fills with the container's
// stdout.
func attachURL(ctx context.Context, t *testing.T, url string) *lockedBuffer {
	t.Helper()
	executor, err := remotecommand.NewWebSocketExecutor(&rest.Config{}, "GET", url)
	if err != nil {
		t.Fatalf("attach executor: %v", err)
	}
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: out})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(pollTimeout):
			t.Errorf("attach stream did not end after its context was cancelled")
		}
	})
	return out
}

// portForwardURL opens a port-forward URL with a plain websocket client and
// returns every binary message until the server closes the session.
func portForwardURL(url, protocol string) ([][]byte, error) {
	dialer := websocket.Dialer{Subprotocols: []string{protocol}, HandshakeTimeout: rpcTimeout}
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
		if kind == websocket.BinaryMessage {
			messages = append(messages, data)
		}
	}
}
