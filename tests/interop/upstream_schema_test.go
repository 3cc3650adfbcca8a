//go:build !conmonrs_v06

package interop

// TestUpstreamSchemaDecodesOurEncoding checks our writer against conmon-rs's own schema: the
// conmon-proto example encode_requests writes one message per request type (and per response
// conmond sends) with fixed values, `capnp decode` reads each with the conmon.capnp of the
// pinned conmon-rs module, and the text must equal testdata/upstream-decode/<Struct>.txt.
//
// It checks conmond's writer, not a client, so only the v1.0.1 run has it (the v0.6.6 run would
// repeat it unchanged).
//
// Needs the `capnp` tool (Debian: capnproto) and the encoder binary at $PROTO_ENCODER
// (default ../../target/debug/examples/encode_requests; run.sh builds it).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	defaultEncoder  = "../../target/debug/examples/encode_requests"
	upstreamModule  = "github.com/containers/conmon-rs@v1.0.1"
	upstreamSchema  = "conmon-rs/common/proto/conmon.capnp"
	decodeTestdata  = "testdata/upstream-decode"
	updateDecodeEnv = "UPDATE_UPSTREAM_DECODE" // set to rewrite the expected text
)

func TestUpstreamSchemaDecodesOurEncoding(t *testing.T) {
	encoder, err := filepath.Abs(envOr("PROTO_ENCODER", defaultEncoder))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(encoder); err != nil {
		t.Fatalf("no encoder at %s (cargo build -p conmon-proto --example encode_requests, "+
			"or set PROTO_ENCODER): %v", encoder, err)
	}
	capnpTool, err := exec.LookPath("capnp")
	if err != nil {
		t.Fatalf("capnp tool not found (apt-get install capnproto): %v", err)
	}
	schema := filepath.Join(moduleDir(t, upstreamModule), upstreamSchema)

	out := t.TempDir()
	if msg, err := exec.Command(encoder, out).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", encoder, out, err, msg)
	}
	encoded, err := filepath.Glob(filepath.Join(out, "*.bin"))
	if err != nil || len(encoded) == 0 {
		t.Fatalf("encoder wrote no messages to %s (%v)", out, err)
	}
	expected, err := filepath.Glob(filepath.Join(decodeTestdata, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(expected) != len(encoded) && os.Getenv(updateDecodeEnv) == "" {
		t.Errorf("encoder wrote %d messages, %s has %d expectations", len(encoded), decodeTestdata, len(expected))
	}
	for _, bin := range encoded {
		name := strings.TrimSuffix(filepath.Base(bin), ".bin")
		t.Run(name, func(t *testing.T) {
			input, err := os.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer input.Close()
			cmd := exec.Command(capnpTool, "decode", schema, "Conmon."+name)
			cmd.Stdin = input
			var stderr strings.Builder
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("capnp decode %s Conmon.%s: %v: %s", schema, name, err, stderr.String())
			}
			want := filepath.Join(decodeTestdata, name+".txt")
			if os.Getenv(updateDecodeEnv) != "" {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantText, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("no expectation for %s: %v", name, err)
			}
			if string(got) != string(wantText) {
				t.Errorf("upstream schema reads our %s as\n%s\nwant\n%s", name, got, wantText)
			}
		})
	}
}

// moduleDir returns where the Go module cache holds a module version, downloading it
// through the module proxy if needed.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	raw, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		t.Fatalf("go mod download -json %s: %v", module, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(raw, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download -json %s: no Dir in %s (%v) %s", module, raw, err, info.Error)
	}
	return info.Dir
}
