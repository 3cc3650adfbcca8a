package interop

// A recording relay for the monitor's RPC socket: the Go client connects to it, it forwards
// every byte to the real conmon.sock, and it keeps a copy of each Cap'n Proto message that
// crossed it, in both directions. The messages are split with the standard stream framing
// (u32 segment count - 1, u32 size of each segment in words, padding to 8 bytes, segments),
// so a saved message can be read back with any capnp serialize reader.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"capnproto.org/go/capnp/v3"
	rpccp "capnproto.org/go/capnp/v3/std/capnp/rpc"
)

// maxSegments bounds the header a peer may announce; conmon messages use one or two.
const maxSegments = 512

// recordedMessage is one RPC message as it crossed the relay, framing included.
type recordedMessage struct {
	fromClient bool
	conn       int // which accepted connection, counted from 0
	raw        []byte
}

type recordingRelay struct {
	listener *net.UnixListener
	upstream string
	wg       sync.WaitGroup

	mu       sync.Mutex
	messages []recordedMessage
	conns    int
	open     []*net.UnixConn // both ends of every connection, for close
	closed   bool
	failures []error
}

// startRelay listens on listenPath and forwards each connection to upstreamPath.
func startRelay(t *testing.T, listenPath, upstreamPath string) *recordingRelay {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: listenPath, Net: "unix"})
	if err != nil {
		t.Fatalf("relay: listen on %s: %v", listenPath, err)
	}
	r := &recordingRelay{listener: ln, upstream: upstreamPath}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *recordingRelay) accept() {
	defer r.wg.Done()
	for {
		client, err := r.listener.AcceptUnix()
		if err != nil {
			return // closed
		}
		server, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: r.upstream, Net: "unix"})
		if err != nil {
			r.fail(fmt.Errorf("relay: dial %s: %w", r.upstream, err))
			_ = client.Close()
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = client.Close()
			_ = server.Close()
			return
		}
		conn := r.conns
		r.conns++
		r.open = append(r.open, client, server)
		r.wg.Add(1)
		r.mu.Unlock()
		go r.pump(conn, client, server)
	}
}

// pump copies both directions of one connection until both have ended.
func (r *recordingRelay) pump(conn int, client, server *net.UnixConn) {
	defer r.wg.Done()
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); r.copyMessages(conn, true, client, server) }()
	go func() { defer both.Done(); r.copyMessages(conn, false, server, client) }()
	both.Wait()
	_ = client.Close()
	_ = server.Close()
}

// copyMessages records each message from src before forwarding it, so a reply can never be
// seen by the client before the relay holds it.
func (r *recordingRelay) copyMessages(conn int, fromClient bool, src, dst *net.UnixConn) {
	defer func() { _ = dst.CloseWrite() }()
	for {
		raw, err := readFrame(src)
		if len(raw) > 0 && err == nil {
			r.mu.Lock()
			r.messages = append(r.messages, recordedMessage{fromClient: fromClient, conn: conn, raw: raw})
			r.mu.Unlock()
		}
		if len(raw) > 0 {
			if _, werr := dst.Write(raw); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.fail(fmt.Errorf("relay: connection %d (from client %v): %w", conn, fromClient, err))
			}
			return
		}
	}
}

// readFrame reads one framed message. On a short read it returns what it got, so the relay
// still forwards it, with the error.
func readFrame(src io.Reader) ([]byte, error) {
	var first [4]byte
	if _, err := io.ReadFull(src, first[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return first[:], err
		}
		return nil, err
	}
	segments := uint64(binary.LittleEndian.Uint32(first[:])) + 1
	if segments > maxSegments {
		return first[:], fmt.Errorf("frame announces %d segments", segments)
	}
	header := 4 + 4*segments
	header += header % 8 // a 4-byte pad keeps the segments 8-byte aligned
	buf := make([]byte, header)
	copy(buf, first[:])
	if _, err := io.ReadFull(src, buf[4:]); err != nil {
		return buf, fmt.Errorf("frame header: %w", err)
	}
	var words uint64
	for i := range segments {
		words += uint64(binary.LittleEndian.Uint32(buf[4+4*i:]))
	}
	body := make([]byte, words*8)
	n, err := io.ReadFull(src, body)
	if err != nil {
		return append(buf, body[:n]...), fmt.Errorf("frame body: %w", err)
	}
	return append(buf, body...), nil
}

func (r *recordingRelay) fail(err error) {
	r.mu.Lock()
	r.failures = append(r.failures, err)
	r.mu.Unlock()
}

// mark returns a position in the record; since(mark) returns what was recorded after it.
func (r *recordingRelay) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.messages)
}

func (r *recordingRelay) since(mark int) []recordedMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedMessage(nil), r.messages[mark:]...)
}

func (r *recordingRelay) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.failures...)
}

// close stops the relay. It closes the connections still open instead of waiting for their
// clients: a Go client keeps its connection until it is shut down, and a test's second
// client of the same server never is.
func (r *recordingRelay) close() {
	_ = r.listener.Close()
	r.mu.Lock()
	r.closed = true
	for _, c := range r.open {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// conmonInterfaceID is the `Conmon` interface's type ID in conmon.capnp.
const conmonInterfaceID = 0xb737e899dd6633f1

// exchange is one call's request message and the server's answer to it.
type exchange struct {
	call, ret []byte
	retErr    string // the exception reason when the answer is an exception
}

// findExchange picks, from messages recorded for one call, the client's Call of the given
// Conmon method and the server's Return to it on the same connection.
func findExchange(messages []recordedMessage, method uint16) (exchange, error) {
	var (
		ex       exchange
		conn     = -1
		question uint32
	)
	for _, m := range messages {
		msg, err := parseRPC(m.raw)
		if err != nil {
			return ex, err
		}
		switch {
		case m.fromClient && ex.call == nil && msg.Which() == rpccp.Message_Which_call:
			call, err := msg.Call()
			if err != nil {
				return ex, err
			}
			if call.InterfaceId() == conmonInterfaceID && call.MethodId() == method {
				ex.call, conn, question = m.raw, m.conn, call.QuestionId()
			}
		case !m.fromClient && ex.call != nil && m.conn == conn && msg.Which() == rpccp.Message_Which_return:
			ret, err := msg.Return()
			if err != nil {
				return ex, err
			}
			if ret.AnswerId() != question {
				continue
			}
			ex.ret = m.raw
			if ret.Which() == rpccp.Return_Which_exception {
				exc, err := ret.Exception()
				if err != nil {
					return ex, err
				}
				if ex.retErr, err = exc.Reason(); err != nil {
					return ex, err
				}
			}
			return ex, nil
		}
	}
	if ex.call == nil {
		return ex, fmt.Errorf("no Call of method @%d among %d recorded messages", method, len(messages))
	}
	return ex, fmt.Errorf("no Return to question %d of method @%d", question, method)
}

func parseRPC(raw []byte) (rpccp.Message, error) {
	msg, err := capnp.Unmarshal(raw)
	if err != nil {
		return rpccp.Message{}, fmt.Errorf("unmarshal recorded message: %w", err)
	}
	return rpccp.ReadRootMessage(msg)
}

// callParams returns the canonical form of a Call message's params struct: equal for equal
// requests whatever the question ID, capability table or segment layout.
func callParams(raw []byte) ([]byte, error) {
	msg, err := parseRPC(raw)
	if err != nil {
		return nil, err
	}
	if msg.Which() != rpccp.Message_Which_call {
		return nil, fmt.Errorf("not a Call message but %v", msg.Which())
	}
	call, err := msg.Call()
	if err != nil {
		return nil, err
	}
	params, err := call.Params()
	if err != nil {
		return nil, err
	}
	content, err := params.Content()
	if err != nil {
		return nil, err
	}
	return capnp.Canonicalize(content.Struct())
}
