package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/bulkfetch"
	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/hostroute"
	"github.com/fhir-migrator/fhir-migrator/internal/identity"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// app is the wired handler: one migration service behind the HTTP API and the function invocations.
type app struct {
	svc *migration.Service
	// assess runs the assessments (POST /api/assessments): documents beside the migrations', advanced by the same
	// PollJob sweep (pollJob).
	assess *assess.Service
	logger *slog.Logger
	// auth is how API callers are let in (auth.go); the zero value is AUTH_MODE keys.
	auth      AuthConfig
	messaging string
	closers   []func()
	// openAPI is the API's description, built on its first request (not at every start of the handler).
	openAPI     []byte
	openAPIErr  error
	openAPIOnce sync.Once
}

// newApp wires the handler: the document store, the staging account, the chained-message sender and the FHIR
// clients, under one migration service.
func newApp(ctx context.Context, cfg *Config, logger *slog.Logger) (_ *app, err error) {
	a := &app{logger: logger, auth: cfg.Auth}
	// A start that fails after the Service Bus client was made must not leave its connection open.
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	azure := &azureIdentity{clientID: cfg.ManagedIdentityClientID}
	docs, err := openDocuments(ctx, cfg, azure)
	if err != nil {
		return nil, err
	}
	stage, err := openStaging(cfg, azure)
	if err != nil {
		return nil, err
	}
	sender, err := a.openMessaging(cfg, azure)
	if err != nil {
		return nil, err
	}
	newClient, policy, fhirCred, err := fhirClientFactory(cfg, logger)
	if err != nil {
		return nil, err
	}
	clients := func(base string) (migration.FHIRClient, error) { return newClient(base) }
	var uploader bulkfetch.Uploader = stage
	bulk := &bulkDataSources{cfg: cfg.SMART, fhirCred: fhirCred, azure: azure, policy: policy, stage: uploader, log: logger}
	var smartClients migration.ClientFactory
	if cfg.SMART.Enabled() {
		smartClients = bulk.client
	}
	a.svc, err = migration.NewService(migration.Config{Tuning: cfg.Tuning, Store: docs, Bus: sender, FHIR: clients,
		SMARTFHIR: smartClients, SourceFiles: bulk.files, Policy: policy, Staging: stage, Logger: logger})
	if err != nil {
		return nil, err
	}
	a.assess, err = assess.NewService(assess.Config{Store: docs, Staging: stage, Validator: a.svc,
		FHIR:                func(base string) (assess.Client, error) { return newClient(base) },
		MaxExportsPerSource: cfg.Tuning.MaxExportsPerSource, MaxPlanningCounts: cfg.Tuning.MaxPlanningCounts, Logger: logger})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// azureIdentity makes the app's Azure credential on first use: storage and Service Bus reached by URL share it,
// and a local run with connection strings never makes one.
type azureIdentity struct {
	clientID string
	cred     azcore.TokenCredential
}

func (i *azureIdentity) credential() (azcore.TokenCredential, error) {
	if i.cred == nil {
		c, err := identity.Azure(i.clientID)
		if err != nil {
			return nil, fmt.Errorf("azure credential: %w", err)
		}
		i.cred = c
	}
	return i.cred, nil
}

// openDocuments opens the migration documents' container (created when missing).
func openDocuments(ctx context.Context, cfg *Config, azure *azureIdentity) (store.Store, error) {
	client, err := blobClient(cfg.DocumentStorage, azure)
	if err != nil {
		return nil, fmt.Errorf("document storage: %w", err)
	}
	return store.NewBlob(ctx, client, cfg.DocumentContainer)
}

// openStaging opens the account the source exports into and the destination imports from.
func openStaging(cfg *Config, azure *azureIdentity) (*staging.Account, error) {
	client, err := blobClient(cfg.StagingStorage, azure)
	if err != nil {
		return nil, fmt.Errorf("staging storage: %w", err)
	}
	return staging.New(client)
}

// The staging account is the engine's staging and the assessment's as it is, and the FHIR client the assessment's:
// no adapter, checked here.
var (
	_ migration.Staging = (*staging.Account)(nil)
	_ assess.Staging    = (*staging.Account)(nil)
	_ assess.Client     = (*fhir.Client)(nil)
)

// openMessaging picks the chained-message sender: Service Bus by namespace (identity) or connection string, else
// the local host's queues.
func (a *app) openMessaging(cfg *Config, azure *azureIdentity) (bus.Sender, error) {
	switch {
	case cfg.ServiceBusNamespace != "":
		cred, err := azure.credential()
		if err != nil {
			return nil, err
		}
		sb, err := bus.NewServiceBus(cfg.ServiceBusNamespace, cred)
		if err != nil {
			return nil, err
		}
		a.messaging = "service bus " + cfg.ServiceBusNamespace
		a.closeServiceBus(sb)
		return sb, nil
	case cfg.ServiceBusConnectionString != "":
		sb, err := bus.NewServiceBusFromConnectionString(cfg.ServiceBusConnectionString)
		if err != nil {
			return nil, err
		}
		a.messaging = "service bus (connection string)"
		a.closeServiceBus(sb)
		return sb, nil
	}
	dh, err := bus.NewDevHost(cfg.DevHostURL)
	if err != nil {
		return nil, err
	}
	a.messaging = "local host " + cfg.DevHostURL
	return dh, nil
}

// fhirClients makes the engine's FHIR client factory (fhirClientFactory), with its host policy and the FHIR
// credential.
func fhirClients(cfg *Config, logger *slog.Logger) (migration.ClientFactory, *fhir.HostPolicy, azcore.TokenCredential, error) {
	newClient, policy, cred, err := fhirClientFactory(cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	return func(base string) (migration.FHIRClient, error) { return newClient(base) }, policy, cred, nil
}

// fhirClientFactory makes the FHIR client factory: allow-listed hosts only, tokens from the FHIR credential (also
// answered, for bulk-data sources without a SMART client).
func fhirClientFactory(cfg *Config, logger *slog.Logger) (func(base string) (*fhir.Client, error), *fhir.HostPolicy, azcore.TokenCredential, error) {
	policy, err := fhir.ParseHostPolicy(cfg.AllowedHosts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("AllowedHosts: %w", err)
	}
	cred, err := identity.New(cfg.FHIRCredential, cfg.ManagedIdentityClientID)
	if err != nil {
		return nil, nil, nil, err
	}
	factory := func(base string) (*fhir.Client, error) {
		return fhir.New(base, fhir.Config{Credential: cred, Policy: policy, Logger: logger, UserAgent: "fhir-migrator"})
	}
	return factory, policy, cred, nil
}

// closeServiceBus has Close release the Service Bus connection.
func (a *app) closeServiceBus(sb *bus.ServiceBus) {
	a.closers = append(a.closers, func() {
		if err := sb.Close(context.Background()); err != nil {
			a.logger.Warn("close service bus", "err", err)
		}
	})
}

// Close releases the connections.
func (a *app) Close() {
	for _, c := range a.closers {
		c()
	}
}

func blobClient(s Storage, azure *azureIdentity) (*azblob.Client, error) {
	if s.ConnectionString != "" {
		c, err := azblob.NewClientFromConnectionString(s.ConnectionString, nil)
		if err != nil {
			// The SDK's error may quote the connection string: never pass it on.
			return nil, errors.New("the storage connection string is malformed")
		}
		return c, nil
	}
	cred, err := azure.credential()
	if err != nil {
		return nil, err
	}
	c, err := azblob.NewClient(s.ServiceURL, cred, nil)
	if err != nil {
		return nil, fmt.Errorf("blob client for %s: %w", s.ServiceURL, err)
	}
	return c, nil
}

// Routes is the handler's whole surface: readiness, the forwarded HTTP API, and one endpoint per non-HTTP function.
// The API's paths are routed by apiRouter (every request under /api: the host forwards those a function's route
// takes, and through the catch-all function ZzFallback every other one), the rest by a ServeMux.
func (a *app) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /PollJob", a.invocation("PollJob", a.pollJob))
	mux.HandleFunc("POST /RunImport", a.invocation("RunImport", a.runImport))
	mux.HandleFunc("POST /VerifyCounts", a.invocation("VerifyCounts", a.verifyCounts))
	mux.HandleFunc("/", noRoute)
	routes := a.apiRoutes()
	for i := range routes {
		routes[i].handle = a.guard(routes[i])
	}
	apis := newAPIRouter(routes)
	return withInvocationLog(a.logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if apis.owns(r) {
			// Every API request, to an operation or not, is authenticated first (entra mode: 401 without a
			// signed-in principal); each operation then checks its role (guard).
			c, refusal := a.authenticate(r)
			if refusal != nil {
				w.Header().Set("WWW-Authenticate", "Bearer")
				api.Write(w, refusal)
				client, _ := clientAddress(r.Header)
				a.logger.Warn("unauthenticated request refused", "method", r.Method, "path", r.URL.Path, "client", client,
					"reason", refusal.Message, "invocationId", r.Header.Get("X-Azure-Functions-InvocationId"))
				return
			}
			apis.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, c)))
			return
		}
		mux.ServeHTTP(w, r)
	}))
}

// apiRoute is one operation of the API: its pattern, the app role a caller needs for it (AUTH_MODE entra), and
// its handler. auditRead: a read that is logged as an audit line (every operation that needs roleOperate changes
// a migration, and is audited in its document and the log).
type apiRoute struct {
	pattern   string
	role      appRole
	auditRead bool
	handle    http.HandlerFunc
}

// apiRoutes are the operations of the HTTP API the Functions host forwards (described by openapi.go), each
// "METHOD path" with {name} parameters, with the app role each needs: roleRead to read, roleOperate to change
// anything (TestEveryOperationHasItsRole holds every operation to one). A path's methods here are what a 405 lists
// in Allow. A test holds them to the function.json files: the host routes each to an API function that takes its
// method (handler/routes_test.go).
func (a *app) apiRoutes() []apiRoute {
	return []apiRoute{
		{"POST /api/migrations", roleOperate, false, a.startMigration},
		{"GET /api/migrations", roleRead, false, a.listMigrations},
		{"GET /api/migrations/{id}", roleRead, false, a.getMigration},
		{"DELETE /api/migrations/{id}", roleOperate, false, a.cancelMigration},
		{"GET /api/migrations/{id}/report", roleRead, true, a.migrationReport},
		{"GET /api/migrations/{id}/report/{part}", roleRead, true, a.migrationReport},
		{"POST /api/migrations/{id}/{action}", roleOperate, false, a.migrationAction},
		{"POST /api/assessments", roleOperate, false, a.startAssessment},
		{"GET /api/assessments/{id}", roleRead, false, a.getAssessment},
		{"GET /api/assessments/{id}/report", roleRead, false, a.assessmentReport},
		{"GET /api/openapi.json", roleRead, false, a.serveOpenAPI},
	}
}

// routeRole is the app role of the operation "METHOD path" (a path of the description, {id} in it): the role of
// the route that serves it.
func routeRole(method, path string) (appRole, bool) {
	for _, rt := range (&app{}).apiRoutes() {
		m, p, _ := strings.Cut(rt.pattern, " ")
		if m != method {
			continue
		}
		if _, ok := hostroute.MustParse(p).Match(path); ok {
			return rt.role, true
		}
	}
	return "", false
}

// withInvocationLog logs each request with the host's invocation id.
func withInvocationLog(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		logger.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"invocationId", r.Header.Get("X-Azure-Functions-InvocationId"), "ms", time.Since(start).Milliseconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
