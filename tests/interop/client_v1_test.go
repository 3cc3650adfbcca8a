//go:build !conmonrs_v06

package interop

// What differs for conmon-rs's Go client v1.0.1 (go.mod, the default build): the client
// generation of CRI-O ≥ 1.35. client_v06_test.go holds the same names for v0.6.6.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/containers/conmon-rs/pkg/client"
	"go.podman.io/common/pkg/resize"
	"go.podman.io/storage/pkg/idtools"
)

// clientVersion names the client generation: the fixture directory and the client's
// service.name in Jaeger.
const clientVersion = "v1.0.1"

// v1.0.1 takes these types from go.podman.io (v0.6.6: from github.com/containers).
func terminalSize(width, height uint16) *resize.TerminalSize {
	return &resize.TerminalSize{Width: width, Height: height}
}

func idMappings(uid, gid idRange) *idtools.IDMappings {
	return idtools.NewIDMappingsFromMaps(
		[]idtools.IDMap{{ContainerID: uid.container, HostID: uid.host, Size: uid.size}},
		[]idtools.IDMap{{ContainerID: gid.container, HostID: gid.host, Size: gid.size}},
	)
}

// streamingGoldenCalls are the Serve* calls, which v1.0 added.
func streamingGoldenCalls(id string, note func(format string, args ...any)) []goldenCall {
	return []goldenCall{
		{name: "serve_exec", method: methodServeExec, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ServeExecContainer(ctx, &client.ServeExecContainerConfig{
				// Alternating flags, so swapping two adjacent fields shows.
				ID: id, Command: []string{"sh", "-c", "echo served"}, Tty: true, Stdin: false, Stdout: true, Stderr: false,
			})
			return wantURL(res, err, note, func(r *client.ServeExecContainerResult) string { return r.URL })
		}},
		{name: "serve_attach", method: methodServeAttach, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ServeAttachContainer(ctx, &client.ServeAttachContainerConfig{
				ID: id, Stdin: true, Stdout: false, Stderr: true,
			})
			return wantURL(res, err, note, func(r *client.ServeAttachContainerResult) string { return r.URL })
		}},
		{name: "serve_port_forward", method: methodServePortForward, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.ServePortForwardContainer(ctx, &client.ServePortForwardContainerConfig{
				NetNsPath: "/proc/1/ns/net",
			})
			return wantURL(res, err, note, func(r *client.ServePortForwardContainerResult) string { return r.URL })
		}},
	}
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

// jaegerStreamingExec runs a streaming exec in the traced lifecycle: its session span must
// hang under the serve RPC in the same trace.
func jaegerStreamingExec(ctx context.Context, t *testing.T, cl *client.ConmonClient, id string) {
	t.Helper()
	serve, err := cl.ServeExecContainer(ctx, &client.ServeExecContainerConfig{
		ID: id, Command: []string{"echo", "streamed"}, Stdout: true, Stderr: true,
	})
	if err != nil {
		t.Fatalf("ServeExecContainer: %v", err)
	}
	if stdout, stderr, err := streamURL(ctx, serve.URL, "v5.channel.k8s.io", "", false); err != nil || stdout != "streamed\n" {
		t.Fatalf("streaming exec: stdout %q stderr %q error %v", stdout, stderr, err)
	}
}
