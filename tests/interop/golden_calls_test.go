package interop

// The calls TestGoldenCapture (golden_test.go) sends, with the fixed values of every field the
// client writes: the fixtures in proto/tests/fixtures/<clientVersion>/requests are these calls.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containers/conmon-rs/pkg/client"
)

const (
	// Every path in a captured request lives here, so requests are the same on every run.
	goldenDir      = "/tmp/conmon-golden"
	goldenFixtures = "../../proto/tests/fixtures/" + clientVersion + "/requests"
	goldenID       = "golden-ctr"
	// The container the untraced client creates (goldenID exists by then).
	goldenUntracedID = "golden-untraced"
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
	untraced bool // sent by the client without tracing
	run      func(ctx context.Context, cl *client.ConmonClient) error
}

// idRange is one line of an ID mapping.
type idRange struct{ container, host, size int }

func goldenPath(name string) string { return filepath.Join(goldenDir, name) }

// createGolden creates container id with fixed values in every field the client sends.
func createGolden(ctx context.Context, e *env, cl *client.ConmonClient, id string) (uint32, error) {
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
		return 0, err
	}
	if resp.PID == 0 {
		return 0, fmt.Errorf("container PID 0")
	}
	return resp.PID, nil
}

// execGolden runs the fixed exec_sync command in the golden container.
func execGolden(ctx context.Context, cl *client.ConmonClient) (*client.ExecContainerResult, error) {
	res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
		ID:      goldenID,
		Command: []string{"sh", "-c", "echo out; echo err >&2; exit 7"},
		Timeout: 20,
		EnvVars: map[string]string{"EXEC_ENV": "exec-value"},
	})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 7 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.TimedOut {
		return res, fmt.Errorf("exec result %+v", res)
	}
	return res, nil
}

// goldenCalls lists the calls in order; note records what the Go client made of each answer.
func goldenCalls(e *env, note func(format string, args ...any)) []goldenCall {
	id := goldenID
	calls := []goldenCall{
		{name: "version", method: methodVersion, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			v, err := cl.Version(ctx, &client.VersionConfig{})
			if err == nil {
				note("%+v", *v)
			}
			return err
		}},
		// Request only: the verbose answer embeds the server's whole dependency tree.
		{name: "version_verbose", method: methodVersion, run: func(ctx context.Context, cl *client.ConmonClient) error {
			_, err := cl.Version(ctx, &client.VersionConfig{Verbose: true})
			return err
		}},
		{name: "create_container", method: methodCreateContainer, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			pid, err := createGolden(ctx, e, cl, id)
			if err != nil {
				return err
			}
			note("PID=%d", pid)
			if out, err := e.runcCmd("start", id); err != nil {
				return fmt.Errorf("runc start: %v: %s", err, out)
			}
			return nil
		}},
		// Fails on every server: no fd was sent to those slots, and the bundle does not exist.
		{name: "create_container_fds", method: methodCreateContainer, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			_, err := cl.CreateContainer(ctx, &client.CreateContainerConfig{
				ID:            "golden-fds",
				BundlePath:    goldenPath("bundles/missing"),
				AdditionalFDs: []client.RemoteFD{7},
				LeakFDs:       []client.RemoteFD{8, 9},
			})
			note("error: %v", err)
			return wantError(err, "")
		}},
		{name: "exec_sync", method: methodExecSync, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := execGolden(ctx, cl)
			if res != nil {
				note("%+v", *res)
			}
			return err
		}},
		{name: "exec_sync_timeout", method: methodExecSync, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
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
		{name: "attach", method: methodAttach, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			return cl.AttachContainer(ctx, &client.AttachConfig{
				ID:                id,
				SocketPath:        goldenPath("attach.sock"),
				ExecSession:       "golden-exec",
				StopAfterStdinEOF: true,
				Passthrough:       true, // the client returns after the RPC
			})
		}},
		{name: "reopen_log", method: methodReopenLog, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			return cl.ReopenLogContainer(ctx, &client.ReopenLogContainerConfig{ID: id})
		}},
		// Fails on every server: the container has no terminal.
		{name: "set_window_size", method: methodSetWindowSize, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			err := cl.SetWindowSizeContainer(ctx, &client.SetWindowSizeContainerConfig{
				ID: id, Size: terminalSize(132, 43),
			})
			note("error: %v", err)
			return wantError(err, "no terminal")
		}},
		// No user namespace: conmon-rs v1.0.1's pause helper hangs creating one here, and
		// without it the client sends no ID mappings.
		{name: "create_namespaces", method: methodCreateNamespaces, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			res, err := cl.CreateNamespaces(ctx, &client.CreateNamespacesConfig{
				Namespaces: []client.Namespace{client.NamespaceIPC, client.NamespaceNet, client.NamespaceUTS},
				IDMappings: idMappings(idRange{0, 100000, 65536}, idRange{0, 200000, 65536}),
				BasePath:   goldenPath("ns"),
				PodID:      "golden-pod",
			})
			if err == nil {
				for _, ns := range res.Namespaces {
					note("%+v", *ns)
				}
			}
			return allowUnimplemented(err)
		}},
		{name: "start_fd_socket", method: methodStartFdSocket, response: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			fds, err := cl.RemoteFDs(ctx)
			if err == nil {
				note("fd socket dialed")
				return fds.Close()
			}
			return allowUnimplemented(err)
		}},
	}
	calls = append(calls, streamingGoldenCalls(id, note)...)
	// Requests without any metadata, the same fields as above otherwise (another container
	// ID, since goldenID exists by then).
	return append(calls,
		goldenCall{name: "create_container_untraced", method: methodCreateContainer, untraced: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			_, err := createGolden(ctx, e, cl, goldenUntracedID)
			return err
		}},
		goldenCall{name: "exec_sync_untraced", method: methodExecSync, untraced: true, run: func(ctx context.Context, cl *client.ConmonClient) error {
			_, err := execGolden(ctx, cl)
			return err
		}},
	)
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
