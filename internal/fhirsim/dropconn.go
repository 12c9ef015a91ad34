package fhirsim

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// bufferedResponse holds a whole answer so that FaultDropConn can cut it part-way on the wire.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func newBufferedResponse() *bufferedResponse { return &bufferedResponse{header: http.Header{}} }

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}

// writeTo relays the held answer unchanged.
func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(b.status())
	_, _ = w.Write(b.body.Bytes())
}

// wire is the answer as HTTP/1.1 bytes, and where its header section ends.
func (b *bufferedResponse) wire() ([]byte, int) {
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", b.status(), http.StatusText(b.status()))
	h := b.header.Clone()
	h.Set("Content-Length", strconv.Itoa(b.body.Len()))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	_ = h.Write(&out)
	out.WriteString("\r\n")
	headerEnd := out.Len()
	out.Write(b.body.Bytes())
	return out.Bytes(), headerEnd
}

// dropConnection writes part of the answer (alternately cut in its headers or in its body) and resets the
// connection, as a network fault between the service and its caller does.
func (s *Server) dropConnection(w http.ResponseWriter, b *bufferedResponse) {
	raw, headerEnd := b.wire()
	cut := headerEnd / 2
	if !s.faults.nextDropCutsHeaders() && len(raw) > headerEnd {
		cut = headerEnd + (len(raw)-headerEnd)/2
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Warn("drop-conn: connection cannot be taken over; aborting the answer instead", "err", err)
		panic(http.ErrAbortHandler) // net/http's own way to abort a response: it closes the connection
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(raw[:cut])
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, not FIN: a reset, as the fault's name says
	}
	_ = conn.Close()
}
