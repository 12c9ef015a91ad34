package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DevHost sends chained messages to the local Functions host's in-memory queues through its admin API
// (POST {base}/admin/servicebus/queues/{queue}/messages). The local host tells the handler its base URL in the
// DEVHOST_URL environment variable.
type DevHost struct {
	base   string
	client *http.Client
}

// NewDevHost returns a sender for the local host at base (a loopback http URL).
func NewDevHost(base string) (*DevHost, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("local host URL %q: want http://127.0.0.1:port", base)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return nil, fmt.Errorf("local host URL %q: only loopback addresses are allowed", base)
	}
	return &DevHost{base: strings.TrimSuffix(base, "/"), client: &http.Client{Timeout: 30 * time.Second}}, nil
}

type devHostMessage struct {
	MessageID            string `json:"messageId"`
	Body                 string `json:"body"`
	ContentType          string `json:"contentType"`
	ScheduledEnqueueTime string `json:"scheduledEnqueueTimeUtc,omitempty"`
}

// Send implements Sender.
func (d *DevHost) Send(ctx context.Context, m Message) error {
	if m.ID == "" {
		return fmt.Errorf("send to %s: message id is required", m.Queue)
	}
	body := devHostMessage{MessageID: m.ID, Body: string(m.Body), ContentType: "application/json"}
	if !m.NotBefore.IsZero() {
		body.ScheduledEnqueueTime = m.NotBefore.UTC().Format(time.RFC3339Nano)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode message %s: %w", m.ID, err)
	}
	endpoint := d.base + "/admin/servicebus/queues/" + url.PathEscape(m.Queue) + "/messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("send message %s: %w", m.ID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("send message %s to %s: %w", m.ID, m.Queue, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("send message %s to %s: local host answered %d: %s", m.ID, m.Queue, resp.StatusCode, strings.TrimSpace(string(excerpt)))
	}
	return nil
}
