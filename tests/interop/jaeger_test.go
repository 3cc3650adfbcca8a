// TestJaegerTrace drives conmond through conmon-rs's Go client with tracing on,
// the way CRI-O does: the client's own spans ("conmonrs-client: <Method>") are
// exported by an OTel SDK tracer provider in this process, and conmond gets
// --enable-tracing plus the W3C trace context in each request's metadata (v0.6.6 also
// in metadataOld, where v1.0 has metadata).
//
// It only runs when JAEGER_OTLP_ENDPOINT (host:port of an OTLP gRPC receiver, e.g.
// 127.0.0.1:14317) is set: tests/interop/jaeger_e2e.sh sets it, once per client
// generation, and then checks the trace that lands in Jaeger. It prints the trace id as
// "TRACE_ID=<hex>"; the client's service.name is "conmon-rs-go-client-<clientVersion>", so
// the two generations' spans stay apart.
package interop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containers/conmon-rs/pkg/client"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestJaegerTrace(t *testing.T) {
	endpoint := os.Getenv("JAEGER_OTLP_ENDPOINT")
	if endpoint == "" {
		t.Skip("JAEGER_OTLP_ENDPOINT not set (run tests/interop/jaeger_e2e.sh)")
	}
	hostPort := strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://")
	e := requirements(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	exporter, err := otlptracegrpc.New(ctx,
		otlptracegrpc.WithEndpoint(hostPort), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatalf("otlptracegrpc exporter to %s: %v", hostPort, err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exporter), // export each span as it ends: no loss on failure
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "conmon-rs-go-client-"+clientVersion))),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("tracer provider shutdown: %v", err)
		}
	}()
	tracer := tp.Tracer("conmond.test/interop")

	var (
		cl       *client.ConmonClient
		shutDown bool
	)
	e.registerCleanup(t, &cl, &shutDown)

	serverLog := e.openServerLog(t)

	ctx, root := tracer.Start(ctx, "jaeger-e2e: go client lifecycle")
	traceID := root.SpanContext().TraceID().String()
	fmt.Printf("TRACE_ID=%s\n", traceID)

	cfg := e.config()
	cfg.Stdout, cfg.Stderr = serverLog, serverLog
	cfg.Tracing = &client.Tracing{
		Enabled:  true,
		Endpoint: "http://" + hostPort,
		Tracer:   tracer,
	}
	cl, err = client.New(cfg)
	if err != nil {
		root.End()
		t.Fatalf("client.New (spawning %s with tracing to %s): %v", e.conmond, hostPort, err)
	}
	serverPID := int(cl.PID())

	func() {
		defer root.End()
		if _, err := cl.Version(ctx, &client.VersionConfig{}); err != nil {
			t.Fatalf("Version: %v", err)
		}
		id := fmt.Sprintf("jaeger-%d-long", os.Getpid())
		e.createRunning(ctx, t, cl, id, filepath.Join(e.tmp, id+".log"), "echo first; exec sleep 1000")
		res, err := cl.ExecSyncContainer(ctx, &client.ExecSyncConfig{
			ID:      id,
			Command: []string{"echo", "hi"},
			Timeout: 20,
		})
		if err != nil {
			t.Fatalf("ExecSyncContainer: %v", err)
		}
		if res.ExitCode != 0 || string(res.Stdout) != "hi\n" {
			t.Fatalf("ExecSyncContainer: exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		jaegerStreamingExec(ctx, t, cl, id)
	}()

	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatalf("flush client spans to %s: %v", hostPort, err)
	}
	// Shutdown (SIGINT) also makes conmond flush its span and log exporters.
	shutDown = true
	if err := cl.Shutdown(); err != nil {
		t.Fatalf("Shutdown (SIGINT to PID %d): %v", serverPID, err)
	}
	t.Logf("trace %s exported by the client; conmond PID %d shut down", traceID, serverPID)
}
