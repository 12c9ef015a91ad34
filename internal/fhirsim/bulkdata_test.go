package fhirsim_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// assertion signs a SMART Backend Services client assertion the way the IG describes, independently of the
// project's client.
func assertion(t *testing.T, key crypto.Signer, clientID, aud, jti string, exp time.Time) string {
	t.Helper()
	alg := "RS384"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES384"
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]string{"alg": alg, "typ": "JWT", "kid": "k1"}) + "." +
		enc(map[string]any{"iss": clientID, "sub": clientID, "aud": aud, "exp": exp.Unix(), "jti": jti})
	digest := sha512.Sum384([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		s, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA384, digest[:])
		require.NoError(t, err)
		sig = s
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		require.NoError(t, err)
		sig = append(r.FillBytes(make([]byte, 48)), s.FillBytes(make([]byte, 48))...)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func requestToken(t *testing.T, s *sim, form url.Values) (int, map[string]any) {
	t.Helper()
	resp := s.do(t, request{method: http.MethodPost, path: fhirsim.TokenPath, noAuth: true, body: form.Encode(),
		headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func tokenForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion}}
}

func TestBulkDataTokenEndpointChecksTheAssertion(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	s := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorBulkData),
		fhirsim.WithSMARTClient("rsa-client", &rsaKey.PublicKey), fhirsim.WithSMARTClient("ec-client", &ecKey.PublicKey))

	var cfg map[string]any
	resp := s.do(t, request{path: fhirsim.SMARTConfigPath, noAuth: true})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&cfg))
	aud := s.URL + fhirsim.TokenPath
	require.Equal(t, aud, cfg["token_endpoint"])

	exp := time.Now().Add(4 * time.Minute)
	code, body := requestToken(t, s, tokenForm(assertion(t, rsaKey, "rsa-client", aud, "j1", exp)))
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.NotEmpty(t, body["access_token"])
	require.EqualValues(t, 300, body["expires_in"])

	code, _ = requestToken(t, s, tokenForm(assertion(t, ecKey, "ec-client", aud, "j1", exp)))
	require.Equal(t, http.StatusOK, code, "ES384, and a jti is unique per client")

	for name, a := range map[string]string{
		"jti reused":      assertion(t, rsaKey, "rsa-client", aud, "j1", exp),
		"wrong audience":  assertion(t, rsaKey, "rsa-client", s.URL, "j2", exp),
		"exp too far":     assertion(t, rsaKey, "rsa-client", aud, "j3", time.Now().Add(10*time.Minute)),
		"expired":         assertion(t, rsaKey, "rsa-client", aud, "j4", time.Now().Add(-time.Minute)),
		"wrong key":       assertion(t, other, "rsa-client", aud, "j5", exp),
		"unknown client":  assertion(t, rsaKey, "nobody", aud, "j6", exp),
		"alg not the key": assertion(t, ecKey, "rsa-client", aud, "j7", exp),
		"not a jws":       "abc.def",
	} {
		code, body := requestToken(t, s, tokenForm(a))
		require.Equal(t, http.StatusBadRequest, code, name)
		require.Equal(t, "invalid_client", body["error"], name)
	}
	form := tokenForm(assertion(t, rsaKey, "rsa-client", aud, "j8", exp))
	form.Set("scope", "system/*.write")
	code, body = requestToken(t, s, form)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "invalid_scope", body["error"])

	grants := s.TokenGrants()
	require.Len(t, grants, 11)
	require.Equal(t, "token-1", grants[0].Token)
	require.Equal(t, "ES384", grants[1].Alg)

	// A token from elsewhere (the development token) is not one this server issued.
	resp = s.do(t, request{path: "/Patient"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// bulkSim is a bulk-data simulator with a registered client, and a way to get tokens.
type bulkSim struct {
	*sim
	key *rsa.PrivateKey
	n   int
}

func startBulkSim(t *testing.T, opts ...fhirsim.Option) *bulkSim {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	opts = append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorBulkData), fhirsim.WithSMARTClient("c", &key.PublicKey),
		fhirsim.WithPollsBeforeDone(0), fhirsim.WithJobDelay(0)}, opts...)
	return &bulkSim{sim: startSim(t, opts...), key: key}
}

func (b *bulkSim) token(t *testing.T) string {
	t.Helper()
	b.n++
	code, body := requestToken(t, b.sim, tokenForm(assertion(t, b.key, "c", b.URL+fhirsim.TokenPath, fmt.Sprint("jti-", b.n), time.Now().Add(time.Minute))))
	require.Equal(t, http.StatusOK, code, "%v", body)
	return body["access_token"].(string)
}

func (b *bulkSim) get(t *testing.T, path, token string, headers map[string]string) *http.Response {
	t.Helper()
	h := map[string]string{"Authorization": "Bearer " + token}
	for k, v := range headers {
		h[k] = v
	}
	return b.do(t, request{path: path, headers: h})
}

type bulkManifest struct {
	TransactionTime     string `json:"transactionTime"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []struct {
		URL string `json:"url"`
	} `json:"error"`
}

// export kicks off path and polls it to its manifest; it returns the status URL too.
func (b *bulkSim) export(t *testing.T, path, token string) (string, bulkManifest) {
	t.Helper()
	resp := b.get(t, path, token, exportHeaders())
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	loc := resp.Header.Get("Content-Location")
	for range 2000 {
		resp = b.get(t, loc, token, nil)
		if resp.StatusCode != http.StatusAccepted {
			break
		}
		time.Sleep(5 * time.Millisecond) // pacing the poll loop, not an assertion
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m bulkManifest
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return loc, m
}

func lines(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		out = append(out, m)
	}
	return out
}

func TestBulkDataExportLevelsFilesAndDelete(t *testing.T) {
	group := `{"resourceType":"Group","id":"g1","type":"person","actual":true,"meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00.000Z"},` +
		`"member":[{"entity":{"reference":"Patient/p1"}},{"entity":{"reference":"Patient/p2"},"inactive":true},{"entity":{"reference":"Group/g2"}}]}`
	nested := `{"resourceType":"Group","id":"g2","type":"person","actual":true,"meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00.000Z"},` +
		`"member":[{"entity":{"reference":"Patient/p3"}},{"entity":{"reference":"Group/g1"}}]}`
	var res []string
	for _, p := range []string{"p1", "p2", "p3", "p4"} {
		res = append(res, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","meta":{"versionId":"1","lastUpdated":"2024-01-02T00:00:00.000Z"}}`, p))
		for i := range 3 {
			res = append(res, fmt.Sprintf(`{"resourceType":"Observation","id":"%s-o%d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/%s"},"meta":{"versionId":"1","lastUpdated":"2024-01-03T00:00:00.000Z"}}`, p, i, p))
		}
	}
	res = append(res, group, nested, `{"resourceType":"Practitioner","id":"dr","meta":{"versionId":"1","lastUpdated":"2024-01-02T00:00:00.000Z"}}`)
	var raw [][]byte
	for _, r := range res {
		raw = append(raw, []byte(r))
	}
	b := startBulkSim(t, fhirsim.WithResources(raw...), fhirsim.WithRollover(2), fhirsim.WithExportErrors("Observation o9 could not be read"))
	tok := b.token(t)

	// What the server declares, and what it refuses.
	var cap struct {
		FHIRVersion string `json:"fhirVersion"`
		Rest        []struct {
			Operation []struct {
				Name, Definition string
			} `json:"operation"`
		} `json:"rest"`
	}
	resp := b.do(t, request{path: "/metadata", noAuth: true})
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&cap))
	require.Len(t, cap.Rest[0].Operation, 3)
	resp = b.get(t, "/OperationDefinition/export", tok, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), `"_since"`)
	require.NotContains(t, string(body), `"_till"`)
	for _, q := range []string{"_till=2024-01-01", "_until=2024-01-01", "_container=x", "includeAssociatedData=_history"} {
		resp = b.get(t, "/$export?"+q, tok, exportHeaders())
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
	resp = b.get(t, "/Group/nope/$export", tok, exportHeaders())
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp = b.do(t, request{path: "/$export", headers: exportHeaders(), noAuth: true})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	fetchAll := func(m bulkManifest) map[string]int {
		byType := map[string]int{}
		for _, f := range m.Output {
			resp := b.get(t, f.URL, tok, map[string]string{"Accept": "application/fhir+ndjson"})
			require.Equal(t, http.StatusOK, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Len(t, lines(t, body), f.Count)
			byType[f.Type] += f.Count
		}
		return byType
	}

	_, m := b.export(t, "/$export", tok)
	require.True(t, m.RequiresAccessToken)
	require.Equal(t, map[string]int{"Patient": 4, "Observation": 12, "Group": 2, "Practitioner": 1}, fetchAll(m))
	require.Len(t, m.Error, 1)
	resp = b.get(t, m.Error[0].URL, tok, nil)
	body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), "Observation o9 could not be read")

	_, m = b.export(t, "/Patient/$export?_type=Patient,Observation", tok)
	require.Equal(t, map[string]int{"Patient": 4, "Observation": 12}, fetchAll(m))

	// The group's active members and its nested group's (the loop back to g1 ignored): p1 and p3.
	loc, m := b.export(t, "/Group/g1/$export", tok)
	require.Equal(t, map[string]int{"Patient": 2, "Observation": 6}, fetchAll(m))
	for _, f := range m.Output {
		require.NotContains(t, f.URL, "p2")
	}

	// A file without the token is refused; DELETE on the status URL removes the files.
	resp = b.do(t, request{path: m.Output[0].URL, noAuth: true})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp = b.do(t, request{method: http.MethodDelete, path: loc, headers: map[string]string{"Authorization": "Bearer " + tok}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	resp = b.get(t, m.Output[0].URL, tok, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp = b.get(t, loc, tok, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	var deletes, unauthorized int
	for _, f := range b.BulkFetches() {
		if f.Method == http.MethodDelete {
			deletes++
		}
		if f.Status == http.StatusUnauthorized {
			unauthorized++
		}
	}
	require.Equal(t, 1, deletes)
	require.Equal(t, 1, unauthorized, "the file fetch without a token, recorded")
}

func TestBulkDataDownloadCutRangeAndRevocation(t *testing.T) {
	var raw [][]byte
	for i := range 10 {
		raw = append(raw, fmt.Appendf(nil, `{"resourceType":"Patient","id":"p%d","meta":{"versionId":"1","lastUpdated":"2024-01-02T00:00:00.000Z"}}`, i))
	}
	b := startBulkSim(t, fhirsim.WithResources(raw...), fhirsim.WithDownloadCuts(1), fhirsim.WithTokenRevocationAfterFiles(2))
	tok := b.token(t)
	_, m := b.export(t, "/$export", tok)
	require.Len(t, m.Output, 1)
	u := m.Output[0].URL

	// The first download stops half-way: the body is short of its Content-Length.
	resp := b.get(t, u, tok, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	full := resp.ContentLength
	got, err := io.ReadAll(resp.Body)
	require.Error(t, err)
	require.Less(t, int64(len(got)), full)

	// A range past the end is refused; the rest, by range: the two parts are the file.
	resp = b.get(t, u, tok, map[string]string{"Range": fmt.Sprintf("bytes=%d-", full)})
	require.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)

	resp = b.get(t, u, tok, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(got))})
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, fmt.Sprintf("bytes %d-%d/%d", len(got), full-1, full), resp.Header.Get("Content-Range"))
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Len(t, lines(t, append(got, rest...)), 10)

	// Two files served: every token issued so far is revoked; a new one works.
	resp = b.get(t, u, tok, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "invalid_token")
	tok2 := b.token(t)
	resp = b.get(t, u, tok2, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, append(got, rest...), body)

	f := b.BulkFetches()
	require.Len(t, f, 5)
	require.True(t, f[0].Cut)
	require.Equal(t, "token-1", f[0].Token)
	require.Equal(t, http.StatusRequestedRangeNotSatisfiable, f[1].Status)
	require.Equal(t, http.StatusPartialContent, f[2].Status)
	require.Equal(t, http.StatusUnauthorized, f[3].Status)
	require.Equal(t, "token-1", f[3].Token)
	require.Equal(t, "token-2", f[4].Token)
	require.Equal(t, http.StatusOK, f[4].Status)
	require.True(t, strings.HasPrefix(f[2].Range, "bytes="))
}
