package fhir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Defaults of Config and of the retry loop.
const (
	DefaultStatusTimeout  = 90 * time.Second
	DefaultRequestTimeout = 60 * time.Second
	DefaultUserAgent      = "fhir-migrator"

	// Retries stay short: the engine schedules the longer waits itself.
	maxRetries     = 3
	retryBaseDelay = 250 * time.Millisecond
	retryMaxDelay  = 2 * time.Second
	retryBudget    = 5 * time.Second

	maxRedirects = 5
	// maxBodyBytes bounds what is read from a FHIR server (manifests of 10,000 files are a few MB).
	maxBodyBytes = 64 << 20
	// tokenRefreshMargin renews a cached token this long before it expires.
	tokenRefreshMargin = 5 * time.Minute
)

// Config configures a Client. Credential and Policy are required.
type Config struct {
	Credential azcore.TokenCredential
	// Policy is the allow-list; New fails when the base URL is not allowed.
	Policy *HostPolicy
	// HTTPClient is optional (tests): its Transport and Timeout are used, wrapped by the token and redirect rules.
	HTTPClient *http.Client
	// StatusTimeout is the per-call timeout of import status polls; default 90s (server holds up to 60 s).
	StatusTimeout time.Duration
	// RequestTimeout is the per-attempt timeout of every other call; default 60s.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	UserAgent      string
	// Now is the clock for token expiry and HTTP-date Retry-After; default time.Now.
	Now func() time.Time
}

// Client talks to one FHIR server (one base URL).
type Client struct {
	base           *url.URL
	baseOrigin     origin
	scope          string
	policy         *HostPolicy
	cred           azcore.TokenCredential
	http           *http.Client
	log            *slog.Logger
	userAgent      string
	statusTimeout  time.Duration
	requestTimeout time.Duration
	now            func() time.Time
	// sleep waits between retries; tests replace it to record delays instead of waiting.
	sleep func(context.Context, time.Duration) error

	tokenMu sync.Mutex
	// token is the cached token for scope; the zero value means none.
	token azcore.AccessToken
}

// New returns a client for the FHIR server at baseURL, which must pass cfg.Policy.CheckBaseURL.
func New(baseURL string, cfg Config) (*Client, error) {
	if cfg.Credential == nil {
		return nil, errors.New("fhir client: Credential is required")
	}
	if cfg.Policy == nil {
		return nil, errors.New("fhir client: Policy is required")
	}
	norm, err := cfg.Policy.CheckBaseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("fhir client: %w", err)
	}
	base, err := url.Parse(norm)
	if err != nil {
		return nil, fmt.Errorf("fhir client: parse base URL: %w", err)
	}
	c := &Client{
		base:           base,
		baseOrigin:     originOf(base),
		policy:         cfg.Policy,
		cred:           cfg.Credential,
		log:            cfg.Logger,
		userAgent:      cfg.UserAgent,
		statusTimeout:  cfg.StatusTimeout,
		requestTimeout: cfg.RequestTimeout,
		now:            cfg.Now,
		sleep:          sleepContext,
	}
	c.scope = c.baseOrigin.String() + "/.default"
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.statusTimeout <= 0 {
		c.statusTimeout = DefaultStatusTimeout
	}
	if c.requestTimeout <= 0 {
		c.requestTimeout = DefaultRequestTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	var baseTransport http.RoundTripper
	var timeout time.Duration
	if cfg.HTTPClient != nil {
		baseTransport, timeout = cfg.HTTPClient.Transport, cfg.HTTPClient.Timeout
	}
	if baseTransport == nil {
		baseTransport = defaultTransport()
	}
	c.http = &http.Client{
		Transport:     &authTransport{client: c, next: baseTransport},
		CheckRedirect: c.checkRedirect,
		Timeout:       timeout,
	}
	return c, nil
}

func defaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	t.MaxIdleConnsPerHost = 8
	return t
}

// BaseURL is the normalised base URL (no trailing slash).
func (c *Client) BaseURL() string { return c.base.String() }

// checkRedirect follows redirects of GET only, and only to allowed hosts; the transport decides the token per hop.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if m := via[0].Method; m != http.MethodGet && m != http.MethodHead {
		return http.ErrUseLastResponse
	}
	if !c.policy.Allows(req.URL) {
		return fmt.Errorf("redirect to %s: %w", redactURL(req.URL), ErrHostNotAllowed)
	}
	return nil
}

// authTransport attaches the bearer token only to requests for the client's own origin, on every hop.
type authTransport struct {
	client *Client
	next   http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody := func() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
	}
	if !t.client.policy.Allows(req.URL) {
		closeBody()
		return nil, fmt.Errorf("call %s: %w", redactURL(req.URL), ErrHostNotAllowed)
	}
	out := req.Clone(req.Context())
	out.Header.Del("Authorization")
	if originOf(req.URL) == t.client.baseOrigin {
		tok, err := t.client.bearer(req.Context())
		if err != nil {
			closeBody()
			return nil, err
		}
		out.Header.Set("Authorization", "Bearer "+tok)
	}
	return t.next.RoundTrip(out)
}

// bearer returns the cached token for the base origin's scope, fetching a new one near expiry.
func (c *Client) bearer(ctx context.Context) (string, error) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	now := c.now()
	if tok := c.token; tok.Token != "" && now.Before(tok.ExpiresOn.Add(-tokenRefreshMargin)) &&
		(tok.RefreshOn.IsZero() || now.Before(tok.RefreshOn)) {
		return tok.Token, nil
	}
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return "", fmt.Errorf("get token for %s: %w", c.scope, err)
	}
	c.token = tok
	return tok.Token, nil
}

// forgetToken drops the cached token after a 401 so the next call fetches a fresh one; a credential that caches
// tokens itself (the SMART client, internal/smart) is told to drop it too.
func (c *Client) forgetToken() {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if inv, ok := c.cred.(interface{ Invalidate(token string) }); ok {
		inv.Invalidate(c.token.Token)
	}
	c.token = azcore.AccessToken{}
}

// call is one logical request; do may send it several times.
type call struct {
	op      string
	method  string
	url     *url.URL
	header  http.Header
	body    []byte
	retry   bool
	timeout time.Duration
}

// response is a fully read answer; url is where it came from after redirects.
type response struct {
	status int
	header http.Header
	body   []byte
	url    *url.URL
}

// do sends the call, retrying transient failures when call.retry is set, and returns the last answer whatever
// its status code.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	if !c.policy.Allows(cl.url) {
		return nil, fmt.Errorf("%s %s: %w", cl.op, redactURL(cl.url), ErrHostNotAllowed)
	}
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		resp, err := c.attempt(ctx, cl, attempt)
		if !cl.retry || attempt >= maxRetries {
			return resp, err
		}
		var delay time.Duration
		switch {
		case err != nil:
			if !transientError(ctx, err) {
				return nil, err
			}
			delay = backoff(attempt)
		case retryableStatus(resp.status):
			delay = ParseRetryAfter(resp.header, c.now())
			if delay == 0 {
				delay = backoff(attempt)
			}
		default:
			return resp, nil
		}
		if waited+delay > retryBudget {
			return resp, err
		}
		waited += delay
		c.log.DebugContext(ctx, "fhir retry", "op", cl.op, "attempt", attempt+1, "delay", delay)
		if serr := c.sleep(ctx, delay); serr != nil {
			return nil, fmt.Errorf("%s: %w", cl.op, serr)
		}
	}
}

func (c *Client) attempt(ctx context.Context, cl call, attempt int) (*response, error) {
	timeout := cl.timeout
	if timeout <= 0 {
		timeout = c.requestTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, cl.url.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: build request: %w", cl.op, err)
	}
	for k, vs := range cl.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("User-Agent", c.userAgent)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL, query included; the redacted one is added below.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		c.log.DebugContext(ctx, "fhir call failed", "op", cl.op, "method", cl.method, "url", redactURL(cl.url),
			"attempt", attempt, "duration", time.Since(start), "error", err)
		return nil, fmt.Errorf("%s %s: %w", cl.op, redactURL(cl.url), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	c.log.DebugContext(ctx, "fhir call", "op", cl.op, "method", cl.method, "url", redactURL(cl.url),
		"status", resp.StatusCode, "attempt", attempt, "duration", time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", cl.op, redactURL(cl.url), err)
	}
	if len(data) > maxBodyBytes {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", cl.op, redactURL(cl.url), maxBodyBytes)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		c.forgetToken()
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data, url: resp.Request.URL}, nil
}

// transientError: connection failures are worth another try; refusals, cancellation and timeouts are not.
func transientError(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrHostNotAllowed) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) {
		return false
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET)
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff is exponential with jitter in [d/2, d].
func backoff(attempt int) time.Duration {
	d := retryBaseDelay << attempt
	if d > retryMaxDelay || d <= 0 {
		d = retryMaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// redactURL is scheme://host/path: queries may carry signatures and are never logged.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// resolve turns a Content-Location or link from the server into an absolute URL.
func (c *Client) resolve(ref string, against *url.URL) (*url.URL, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return nil, errors.New("empty URL")
	}
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	if against == nil {
		against = c.base
	}
	return against.ResolveReference(u), nil
}

// endpoint is base + "/" + path with the query.
func (c *Client) endpoint(path string, query url.Values) *url.URL {
	u := *c.base
	if path != "" {
		u.Path = strings.TrimRight(c.base.Path, "/") + "/" + path
		u.RawPath = ""
	}
	u.RawQuery = query.Encode()
	return &u
}
