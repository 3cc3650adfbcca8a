//go:build !conmonrs_v06

package interop

// The streaming server over SPDY/3.1, the transport kubelet's streaming library serves
// besides websockets and the one the API server and older kubectl still dial: client-go's
// SPDY executor and port forwarder, as they run against a kubelet.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/conmon-rs/pkg/client"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
)

// spdyExecutor is client-go's SPDY executor for a streaming exec or attach URL.
func spdyExecutor(t *testing.T, rawURL string) remotecommand.Executor {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("streaming URL %q: %v", rawURL, err)
	}
	executor, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatalf("SPDY executor: %v", err)
	}
	return executor
}

// serveExec returns a streaming exec URL for cfg.
func serveExec(ctx context.Context, t *testing.T, cl *client.ConmonClient, cfg *client.ServeExecContainerConfig) string {
	t.Helper()
	res, err := cl.ServeExecContainer(ctx, cfg)
	if err != nil {
		t.Fatalf("ServeExecContainer: %v", err)
	}
	return res.URL
}

// sizeQueue hands its sizes to the executor's resize stream; closed, it ends the resizing.
type sizeQueue chan *remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize { return <-q }

// spdyUpgrade sends a bare SPDY/3.1 upgrade request to rawURL offering protocols (none: no
// X-Stream-Protocol-Version header) and returns the response with its body.
func spdyUpgrade(ctx context.Context, rawURL string, protocols ...string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", rawURL, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, protocol := range protocols {
		req.Header.Add("X-Stream-Protocol-Version", protocol)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusSwitchingProtocols {
		return res, "", nil // an upgraded connection: its body would not end
	}
	body, err := io.ReadAll(res.Body)
	return res, string(body), err
}

// listenInNetns opens n TCP listeners on 127.0.0.1 (free ports) inside the network
// namespace at path. A socket stays in the namespace it was made in, so only the making
// needs a thread in the namespace.
func listenInNetns(path string, n int) ([]net.Listener, error) {
	type result struct {
		listeners []net.Listener
		err       error
	}
	made := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine rather than go back to the
		// scheduler in the pod's namespace.
		runtime.LockOSThread()
		listeners, err := listenIn(path, n)
		made <- result{listeners, err}
	}()
	r := <-made
	return r.listeners, r.err
}

// listenIn moves the calling thread into the network namespace at path and listens there.
func listenIn(path string, n int) ([]net.Listener, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns %s: %w", path, err)
	}
	var listeners []net.Listener
	for range n {
		listener, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, err
		}
		listeners = append(listeners, listener)
	}
	return listeners, nil
}

// serveEcho answers each connection to listener with prefix, then echoes what it receives,
// until listener is closed.
func serveEcho(listener net.Listener, prefix string) {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			if _, err := io.WriteString(conn, prefix); err == nil {
				_, _ = io.Copy(conn, conn)
			}
		}()
	}
}

// echoThrough connects to addr, where serveEcho must answer with prefix, sends payload and
// checks it comes back whole.
func echoThrough(addr, prefix string, payload []byte) error {
	conn, err := net.DialTimeout("tcp", addr, rpcTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(rpcTimeout)); err != nil {
		return err
	}
	// The pod side speaks first: its prefix comes before anything is sent.
	got := make([]byte, len(prefix))
	if n, err := io.ReadFull(conn, got); err != nil || string(got) != prefix {
		return fmt.Errorf("%s: prefix %q (%v), want %q", addr, got[:n], err, prefix)
	}
	// Written while the echo is read: a payload larger than the buffers on the way would
	// block a writer nobody reads.
	written := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		written <- err
	}()
	echo := make([]byte, len(payload))
	if n, err := io.ReadFull(conn, echo); err != nil {
		return fmt.Errorf("%s: echo ended after %d of %d bytes: %v", addr, n, len(payload), err)
	}
	if err := <-written; err != nil {
		return fmt.Errorf("%s: send: %v", addr, err)
	}
	if !bytes.Equal(echo, payload) {
		return fmt.Errorf("%s: the %d bytes echoed differ from those sent", addr, len(payload))
	}
	return nil
}

// forwardPorts runs client-go's SPDY port forwarder on rawURL for ports ("local:remote")
// until stop is called or the test finishes. It returns the ports once they listen, and
// done, which receives ForwardPorts' result.
func forwardPorts(t *testing.T, rawURL string, ports []string) ([]portforward.ForwardedPort, <-chan error, func()) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("port-forward URL %q: %v", rawURL, err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatalf("SPDY round tripper: %v", err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stopCh, ready := make(chan struct{}), make(chan struct{})
	stop := sync.OnceFunc(func() { close(stopCh) })
	t.Cleanup(stop)
	forwarder, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, ports, stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("port forwarder: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- forwarder.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port forwarder: %v", err)
	case <-time.After(pollTimeout):
		t.Fatalf("port forwarder not ready after %v", pollTimeout)
	}
	forwarded, err := forwarder.GetPorts()
	if err != nil {
		t.Fatalf("forwarded ports: %v", err)
	}
	return forwarded, done, stop
}

// spdyChecks are the Serve* subtests over SPDY, run by streamingChecks.
func spdyChecks(check func(string, func(*testing.T)), cl *client.ConmonClient, longID string, longPID int) {
	check("ServeExecContainerSPDY", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		url := serveExec(ctx, t, cl, &client.ServeExecContainerConfig{
			ID: longID, Command: []string{"sh", "-c", "cat; echo to-stderr >&2; exit 3"},
			Stdin: true, Stdout: true, Stderr: true,
		})
		// More than SPDY/3.1's initial 64 KiB window, both ways: client-go's spdystream sends
		// no WINDOW_UPDATE, so a server that waits for one stalls here.
		stdin := strings.Repeat("via client-go over SPDY\n", 4096)
		stdout, stderr, err := stream(ctx, spdyExecutor(t, url), stdin, false)
		var exitErr utilexec.CodeExitError
		if !errors.As(err, &exitErr) || exitErr.Code != 3 {
			t.Fatalf("exec: want exit code 3, got %v", err)
		}
		if stdout != stdin || stderr != "to-stderr\n" {
			t.Fatalf("exec: stdout %d bytes (stdin %d), stderr %q", len(stdout), len(stdin), stderr)
		}
	})
	check("ServeExecContainerSPDYTty", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		// The resize may land before or after the shell starts: poll for it, then read a line
		// typed on the terminal.
		script := `for i in $(seq 50); do
			if [ "$(stty size)" = "40 100" ]; then read line; echo "resized-$line"; exit 0; fi
			sleep 0.1
		done
		stty size; exit 1`
		url := serveExec(ctx, t, cl, &client.ServeExecContainerConfig{
			ID: longID, Command: []string{"sh", "-c", script}, Tty: true, Stdin: true, Stdout: true,
		})
		// Stdin stays open until the session ends: what a server does at its end on a terminal
		// (close it, send ^D) is not what this checks.
		stdin, typing := io.Pipe()
		defer typing.Close()
		go func() { _, _ = io.WriteString(typing, "typed\n") }()
		sizes := make(sizeQueue, 1)
		sizes <- &remotecommand.TerminalSize{Width: 100, Height: 40}
		close(sizes)
		var stdout bytes.Buffer
		err := spdyExecutor(t, url).StreamWithContext(ctx, remotecommand.StreamOptions{
			Stdin: stdin, Stdout: &stdout, Tty: true, TerminalSizeQueue: sizes,
		})
		if err != nil || !strings.Contains(stdout.String(), "resized-typed\r\n") {
			t.Fatalf("tty exec with a resize: stdout %q, error %v", stdout.String(), err)
		}
	})
	check("ServePortForwardContainerSPDY", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		// The container has nothing listening: this test's own servers, in its namespace.
		listeners, err := listenInNetns(fmt.Sprintf("/proc/%d/ns/net", longPID), 2)
		if err != nil {
			t.Fatalf("listen in the pod's network namespace: %v", err)
		}
		var ports []string
		for _, listener := range listeners {
			t.Cleanup(func() { listener.Close() })
			port := listener.Addr().(*net.TCPAddr).Port
			ports = append(ports, fmt.Sprintf("0:%d", port))
			go serveEcho(listener, fmt.Sprintf("pod port %d:", port))
		}
		forwarded, done, stop := forwardPorts(t, servePortForward(ctx, t, cl, longPID), ports)
		big := make([]byte, 1<<20)
		_, _ = rand.Read(big)
		payloads := [][]byte{big, []byte("a line for the second port\n")}
		// Both ports at once, over the one SPDY connection.
		errs := make(chan error, len(forwarded))
		for i, port := range forwarded {
			go func() {
				addr := fmt.Sprintf("127.0.0.1:%d", port.Local)
				errs <- echoThrough(addr, fmt.Sprintf("pod port %d:", port.Remote), payloads[i])
			}()
		}
		for range forwarded {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("port forwarder ended with %v after its stop", err)
			}
		case <-time.After(pollTimeout):
			t.Fatalf("port forwarder did not return %v after its stop", pollTimeout)
		}
	})
	check("ServeSPDYUpgradeRefused", func(t *testing.T) {
		ctx, cancel := rpcCtx()
		defer cancel()
		execURL := func() string {
			return serveExec(ctx, t, cl, &client.ServeExecContainerConfig{ID: longID, Command: []string{"true"}, Stdout: true})
		}
		portForwardURL := func() string { return servePortForward(ctx, t, cl, longPID) }
		// As kubelet's handshake: no common protocol is 403 with the ones the server speaks,
		// no protocol offered at all is 400.
		refusals := []struct {
			name      string
			url       func() string
			protocols []string
			status    int
			accepted  string // among X-Accepted-Stream-Protocol-Versions
		}{
			{"exec offering v99", execURL, []string{"v99.channel.k8s.io"}, http.StatusForbidden, "v4.channel.k8s.io"},
			{"port-forward offering v99", portForwardURL, []string{"v99.channel.k8s.io"}, http.StatusForbidden, "portforward.k8s.io"},
			{"exec offering none", execURL, nil, http.StatusBadRequest, ""},
		}
		for _, refusal := range refusals {
			res, body, err := spdyUpgrade(ctx, refusal.url(), refusal.protocols...)
			if err != nil {
				t.Fatalf("%s: %v", refusal.name, err)
			}
			accepted := strings.Join(res.Header.Values("X-Accepted-Stream-Protocol-Versions"), ", ")
			if res.StatusCode != refusal.status || !strings.Contains(accepted, refusal.accepted) {
				t.Errorf("%s: status %d, accepted versions %q, body %q; want %d accepting %q",
					refusal.name, res.StatusCode, accepted, body, refusal.status, refusal.accepted)
			}
		}
	})
}
