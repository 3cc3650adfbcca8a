//go:build conmonrs_v06

package interop

// What differs for conmon-rs's Go client v0.6.6 (go test -modfile=go.v0.6.mod -tags
// conmonrs_v06): the client CRI-O ≤ 1.34 links. It writes the pre-1.0 request layout
// (metadataOld :Data where v1.0 has metadata, metadata one pointer later) and has no Serve*
// methods: CRI-O 1.34 serves exec, attach and port-forward streams itself.
// client_v1_test.go holds the same names for v1.0.1.

import (
	"context"
	"testing"

	"github.com/containers/common/pkg/resize"
	"github.com/containers/conmon-rs/pkg/client"
	"github.com/containers/storage/pkg/idtools"
)

// clientVersion names the client generation: the fixture directory and the client's
// service.name in Jaeger.
const clientVersion = "v0.6.6"

// v0.6.6 takes these types from github.com/containers (v1.0.1: from go.podman.io).
func terminalSize(width, height uint16) *resize.TerminalSize {
	return &resize.TerminalSize{Width: width, Height: height}
}

func idMappings(uid, gid idRange) *idtools.IDMappings {
	return idtools.NewIDMappingsFromMaps(
		[]idtools.IDMap{{ContainerID: uid.container, HostID: uid.host, Size: uid.size}},
		[]idtools.IDMap{{ContainerID: gid.container, HostID: gid.host, Size: gid.size}},
	)
}

// streamingGoldenCalls: v0.6.6 has no Serve* calls to capture.
func streamingGoldenCalls(string, func(string, ...any)) []goldenCall { return nil }

// jaegerStreamingExec: v0.6.6 cannot ask for a streaming exec, so its trace has none.
func jaegerStreamingExec(context.Context, *testing.T, *client.ConmonClient, string) {}

// streamingChecks: v0.6.6 has no Serve* methods, so TestConmond has no streaming subtests.
func streamingChecks(func(string, func(*testing.T)), *client.ConmonClient, string, int) {}
