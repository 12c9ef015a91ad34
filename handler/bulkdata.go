package main

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/fhir-migrator/fhir-migrator/internal/bulkfetch"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/smart"
)

// bulkDataSources makes what a bulk-data source is called with: a SMART Backend Services credential per source
// server when a SMART client is configured (each server has its own token endpoint and tokens), else the FHIR
// credential; and the file fetcher that stages its export's files with the same credential.
type bulkDataSources struct {
	cfg      SMARTConfig
	fhirCred azcore.TokenCredential
	// azure is the app's Azure identity, for Key Vault.
	azure  *azureIdentity
	policy *fhir.HostPolicy
	stage  bulkfetch.Uploader
	log    *slog.Logger

	mu    sync.Mutex
	creds map[string]*smart.Credential
}

// credential is the token source of a bulk-data source at base.
func (b *bulkDataSources) credential(base string) (azcore.TokenCredential, error) {
	if !b.cfg.Enabled() {
		return b.fhirCred, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.creds[base]; c != nil {
		return c, nil
	}
	var signer smart.Signer
	if path, ok := strings.CutPrefix(b.cfg.SigningKey, "file:"); ok {
		s, err := smart.NewFileSigner(path)
		if err != nil {
			return nil, fmt.Errorf("SmartSigningKey: %w", err)
		}
		signer = s
	} else {
		cred, err := b.azure.credential()
		if err != nil {
			return nil, err
		}
		s, err := smart.NewKeyVaultSigner(b.cfg.SigningKey, b.cfg.SigningAlg, cred, nil)
		if err != nil {
			return nil, err
		}
		signer = s
	}
	c, err := smart.New(smart.Config{FHIRBaseURL: base, ClientID: b.cfg.ClientID, Scope: b.cfg.Scope, KeyID: b.cfg.KeyID,
		Signer: signer, Logger: b.log})
	if err != nil {
		return nil, err
	}
	if b.creds == nil {
		b.creds = map[string]*smart.Credential{}
	}
	b.creds[base] = c
	return c, nil
}

// client is the SMART-authorised FHIR client of a bulk-data source.
func (b *bulkDataSources) client(base string) (migration.FHIRClient, error) {
	cred, err := b.credential(base)
	if err != nil {
		return nil, err
	}
	return fhir.New(base, fhir.Config{Credential: cred, Policy: b.policy, Logger: b.log, UserAgent: "fhir-migrator"})
}

// files is the file fetcher of a bulk-data source: its files into the staging account.
func (b *bulkDataSources) files(base string) (migration.SourceFiles, error) {
	if b.stage == nil {
		return nil, fmt.Errorf("the staging account cannot take streamed uploads")
	}
	cred, err := b.credential(base)
	if err != nil {
		return nil, err
	}
	return bulkfetch.New(bulkfetch.Config{SourceBaseURL: base, Credential: cred, Uploader: b.stage,
		Allow: b.policy.Allows, Logger: b.log})
}
