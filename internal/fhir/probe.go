package fhir

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Calls an assessment makes to learn a server's configuration without writing anything (internal/assess).

// Capability is what a server's CapabilityStatement says of it.
type Capability struct {
	// FHIRVersion is the FHIR version it speaks ("4.0.1"); Software its software's name and version.
	FHIRVersion     string `json:"fhirVersion"`
	Software        string `json:"software,omitempty"`
	SoftwareVersion string `json:"softwareVersion,omitempty"`
	// Implementation is implementation.description, or its url.
	Implementation string `json:"implementation,omitempty"`
	// Types are the server rest resource types; Operations the system-level operations' names ("export").
	Types      []string `json:"types"`
	Operations []string `json:"operations,omitempty"`
}

// Capability reads GET {base}/metadata.
func (c *Client) Capability(ctx context.Context) (*Capability, error) {
	const op = "metadata"
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodGet, url: c.endpoint("metadata", nil), retry: true,
		header: http.Header{"Accept": {mediaFHIRJSON}},
	})
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, newError(op, resp, c.now())
	}
	types, err := parseCapabilityTypes(resp.body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var cs struct {
		FHIRVersion string `json:"fhirVersion"`
		Software    struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"software"`
		Implementation struct {
			Description string `json:"description"`
			URL         string `json:"url"`
		} `json:"implementation"`
		Rest []struct {
			Mode      string `json:"mode"`
			Operation []struct {
				Name string `json:"name"`
			} `json:"operation"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(resp.body, &cs); err != nil {
		return nil, fmt.Errorf("%s: capability statement is malformed: %w", op, err)
	}
	out := &Capability{FHIRVersion: excerpt(cs.FHIRVersion, 32), Software: excerpt(cs.Software.Name, 200),
		SoftwareVersion: excerpt(cs.Software.Version, 64), Implementation: excerpt(cs.Implementation.Description, 200), Types: types}
	if out.Implementation == "" {
		out.Implementation = excerpt(cs.Implementation.URL, 200)
	}
	for _, r := range cs.Rest {
		if r.Mode != "server" {
			continue
		}
		for _, o := range r.Operation {
			out.Operations = append(out.Operations, excerpt(o.Name, 64))
		}
	}
	return out, nil
}

// ProbeAnswer is a server's answer to a probe that it is expected to refuse: its status and the
// OperationOutcome's text (or an excerpt of the body).
type ProbeAnswer struct {
	Status  int    `json:"status"`
	Message string `json:"message,omitempty"`
}

// ImportProbe posts $import with one input of type SearchParameter at inputURL, a request the service always
// refuses without creating a job, and answers how it refused. fhir-server's ImportController.Import checks, in
// this order: that import is enabled (CheckIfImportIsEnabled: "The requested "import" operation is not
// enabled"), then ValidateImportRequestConfiguration: the input list is not empty, a storage account is configured
// for import ("The import storage account is not configured correctly on the server"), each input's url is
// absolute, without query, and on the configured account's host ("input.url must match the configured integration
// storage account endpoint"), and only then that no input is a SearchParameter ("Requested operation does not
// support resource type: SearchParameter."), before the import mode and before CreateImportRequestHandler would
// create the job. So the last refusal proves that import is enabled and reads from inputURL's account. Never
// retried: the answer is the point.
func (c *Client) ImportProbe(ctx context.Context, inputURL string) (*ProbeAnswer, error) {
	const op = "import probe"
	body, err := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []parameter{
		{Name: "inputFormat", ValueString: mediaFHIRNDJSON},
		{Name: "input", Part: []parameter{{Name: "type", ValueString: "SearchParameter"}, {Name: "url", ValueURI: inputURL}}},
	}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodPost, url: c.endpoint("$import", nil), body: body,
		header: http.Header{"Prefer": {"respond-async"}, "Content-Type": {mediaFHIRJSON}, "Accept": {mediaFHIRJSON}},
	})
	if err != nil {
		return nil, err
	}
	return &ProbeAnswer{Status: resp.status, Message: outcomeMessage(resp.body)}, nil
}

// LockProbe posts to {base}/metadata, which no route takes: fhir-server's InitialImportLockMiddleware runs before
// routing and answers 423 to every request but GETs, POST $import and DELETEs of _operations while import is
// enabled with InitialImportMode on (FhirServerServiceCollectionExtensions.cs registers it before MVC), so 423
// means the service is in initial import mode and anything else that it is not. Nothing can be written: the
// metadata route reads only. Never retried.
func (c *Client) LockProbe(ctx context.Context) (*ProbeAnswer, error) {
	const op = "initial import mode probe"
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodPost, url: c.endpoint("metadata", nil),
		header: http.Header{"Accept": {mediaFHIRJSON}},
	})
	if err != nil {
		return nil, err
	}
	return &ProbeAnswer{Status: resp.status, Message: outcomeMessage(resp.body)}, nil
}
