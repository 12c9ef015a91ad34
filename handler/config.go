package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/funcs"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/smart"
)

// Config is every setting the handler reads, validated at start. In Azure the settings are app settings; locally
// they are the Values of local.settings.json, which the local host passes as environment variables.
type Config struct {
	// ListenAddr is 127.0.0.1:{FUNCTIONS_CUSTOMHANDLER_PORT}.
	ListenAddr string

	// AllowedHosts is the FHIR host allow-list (setting AllowedHosts).
	AllowedHosts string
	// FHIRCredential is "azure" (DefaultAzureCredential / managed identity) or "dev" (local development tokens,
	// loopback audiences only) (setting FhirCredential).
	FHIRCredential string
	// ManagedIdentityClientID selects a user-assigned identity (setting AZURE_CLIENT_ID).
	ManagedIdentityClientID string

	// DocumentStorage is where migration documents live: the host's storage account (AzureWebJobsStorage as a
	// connection string, or AzureWebJobsStorage__blobServiceUri / __accountName with the identity).
	DocumentStorage Storage
	// DocumentContainer is the container of the documents (setting MigrationContainer).
	DocumentContainer string
	// StagingStorage is the account the source exports into and the destination imports from (StagingStorage as
	// a connection string, or StagingStorage__blobServiceUri with the identity).
	StagingStorage Storage

	// Messaging: Service Bus in Azure (ServiceBusConnection__fullyQualifiedNamespace, or ServiceBusConnection as a
	// connection string); the local host's queues when it set DEVHOST_URL.
	ServiceBusNamespace        string
	ServiceBusConnectionString string
	DevHostURL                 string

	// Tuning is the engine's pacing and bounds: its defaults, with the settings named by Tuning.Settings.
	Tuning migration.Tuning

	// SMART is the SMART Backend Services client of bulk-data sources (settings SmartClientId, SmartSigningKey,
	// SmartSigningAlg, SmartScope, SmartKeyId); unset, bulk-data sources authorise with the identity or not at all.
	SMART SMARTConfig

	// Auth is how the HTTP API's callers are let in (settings AUTH_MODE and AUTH_CLIENT_ID; auth.go).
	Auth AuthConfig

	LogLevel slog.Level // setting LogLevel: debug, info (default), warn, error
	// LogFormat is text (key=value, default) or json (one object per line: what the Azure dashboard queries).
	LogFormat string
}

// NewLogger writes the handler's log lines to w in the configured format and level.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// SMARTConfig configures the SMART Backend Services client (internal/smart). SigningKey is a Key Vault key
// identifier (https://{vault}.vault.azure.net/keys/{name}[/{version}], signed with SigningAlg) or, with
// FhirCredential dev only, file:{path} of a PEM private key (the local stack).
type SMARTConfig struct {
	ClientID   string
	SigningKey string
	SigningAlg string
	Scope      string
	KeyID      string
}

// Enabled reports whether a SMART client is configured.
func (s SMARTConfig) Enabled() bool { return s.ClientID != "" }

// Storage is a storage account reached by connection string (local) or by URL with the identity (Azure).
type Storage struct {
	ConnectionString string
	ServiceURL       string
}

func (s Storage) configured() bool { return s.ConnectionString != "" || s.ServiceURL != "" }

// LoadConfig reads and validates the settings; the error names every missing or malformed setting.
func LoadConfig(getenv func(string) string) (*Config, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}

	c := &Config{
		AllowedHosts:               get("AllowedHosts", "*.azurehealthcareapis.com"),
		FHIRCredential:             get("FhirCredential", "azure"),
		ManagedIdentityClientID:    get("AZURE_CLIENT_ID", ""),
		DocumentContainer:          get("MigrationContainer", "fhir-migrations"),
		ServiceBusNamespace:        get("ServiceBusConnection__fullyQualifiedNamespace", ""),
		ServiceBusConnectionString: get("ServiceBusConnection", ""),
		DevHostURL:                 get("DEVHOST_URL", ""),
	}

	if addr, err := funcs.ListenAddr(getenv); err != nil {
		bad("%v", err)
	} else {
		c.ListenAddr = addr
	}

	if c.FHIRCredential != "azure" && c.FHIRCredential != "dev" {
		bad("FhirCredential: want \"azure\" or \"dev\", got %q", c.FHIRCredential)
	}

	c.DocumentStorage = Storage{ConnectionString: get("AzureWebJobsStorage", "")}
	if !c.DocumentStorage.configured() {
		if u := get("AzureWebJobsStorage__blobServiceUri", ""); u != "" {
			c.DocumentStorage.ServiceURL = u
		} else if acct := get("AzureWebJobsStorage__accountName", ""); acct != "" {
			c.DocumentStorage.ServiceURL = "https://" + acct + ".blob.core.windows.net/"
		}
	}
	if !c.DocumentStorage.configured() {
		bad("AzureWebJobsStorage: set a connection string, or AzureWebJobsStorage__accountName / __blobServiceUri")
	} else if c.DocumentStorage.ServiceURL != "" {
		checkServiceURL("AzureWebJobsStorage__blobServiceUri", c.DocumentStorage.ServiceURL, bad)
	}

	c.StagingStorage = Storage{ConnectionString: get("StagingStorage", ""), ServiceURL: get("StagingStorage__blobServiceUri", "")}
	switch {
	case !c.StagingStorage.configured():
		bad("StagingStorage__blobServiceUri: set the staging account's blob URL (or StagingStorage as a connection string)")
	case c.StagingStorage.ConnectionString != "" && c.StagingStorage.ServiceURL != "":
		bad("StagingStorage: set either a connection string or StagingStorage__blobServiceUri, not both")
	case c.StagingStorage.ServiceURL != "":
		checkServiceURL("StagingStorage__blobServiceUri", c.StagingStorage.ServiceURL, bad)
	}

	if c.ServiceBusNamespace == "" && c.ServiceBusConnectionString == "" && c.DevHostURL == "" {
		bad("ServiceBusConnection__fullyQualifiedNamespace: set the Service Bus namespace (e.g. myns.servicebus.windows.net)")
	}

	c.Tuning = migration.DefaultTuning()
	for _, st := range c.Tuning.Settings() {
		v := get(st.Name, st.Default)
		if st.Int != nil {
			n, err := strconv.Atoi(v)
			if err != nil {
				bad("%s: want a positive integer, got %q", st.Name, v)
				continue
			}
			*st.Int = n
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			bad("%s: want a positive duration such as 30s or 2m, got %q", st.Name, v)
			continue
		}
		*st.Duration = d
	}
	if err := c.Tuning.Validate(); err != nil {
		for _, e := range strings.Split(err.Error(), "\n") {
			bad("%s", e)
		}
	}

	c.Auth = AuthConfig{Mode: get("AUTH_MODE", AuthKeys), ClientID: get("AUTH_CLIENT_ID", "")}
	switch c.Auth.Mode {
	case AuthKeys:
	case AuthEntra:
		if !guidPattern.MatchString(c.Auth.ClientID) {
			bad("AUTH_CLIENT_ID: with AUTH_MODE entra, set the application (client) id of the app registration the tokens are issued for (a GUID), got %q", c.Auth.ClientID)
		}
	default:
		bad("AUTH_MODE: want %q or %q, got %q", AuthKeys, AuthEntra, c.Auth.Mode)
	}

	c.SMART = SMARTConfig{ClientID: get("SmartClientId", ""), SigningKey: get("SmartSigningKey", ""),
		SigningAlg: get("SmartSigningAlg", ""), Scope: get("SmartScope", ""), KeyID: get("SmartKeyId", "")}
	checkSMART(c.SMART, c.FHIRCredential, bad)

	if err := c.LogLevel.UnmarshalText([]byte(get("LogLevel", "info"))); err != nil {
		bad("LogLevel: want debug, info, warn or error, got %q", get("LogLevel", ""))
	}
	switch c.LogFormat = get("LogFormat", "text"); c.LogFormat {
	case "text", "json":
	default:
		bad("LogFormat: want text or json, got %q", c.LogFormat)
	}

	if len(problems) > 0 {
		return nil, errors.New("invalid settings:\n  " + strings.Join(problems, "\n  "))
	}
	return c, nil
}

// checkSMART validates the SMART client settings; a key value is never echoed beyond its kind.
func checkSMART(s SMARTConfig, fhirCredential string, bad func(string, ...any)) {
	if s.ClientID == "" {
		if s.SigningKey != "" || s.SigningAlg != "" || s.Scope != "" || s.KeyID != "" {
			bad("SmartClientId: set it with the other Smart* settings, or none of them")
		}
		return
	}
	switch path, isFile := strings.CutPrefix(s.SigningKey, "file:"); {
	case s.SigningKey == "":
		bad("SmartSigningKey: set the Key Vault key identifier (https://{vault}.vault.azure.net/keys/{name}[/{version}]) that signs the client assertions")
	case isFile:
		if fhirCredential != "dev" {
			bad("SmartSigningKey: a key file is for the local stack only (FhirCredential dev); use a Key Vault key")
		} else if path == "" {
			bad("SmartSigningKey: file: needs a path")
		}
	default:
		if _, err := smart.KeyVaultSignURL(s.SigningKey); err != nil {
			bad("SmartSigningKey: want a Key Vault key identifier https://{vault}.vault.azure.net/keys/{name}[/{version}]")
		}
		if s.SigningAlg != "RS384" && s.SigningAlg != "ES384" {
			bad("SmartSigningAlg: want RS384 (an RSA key) or ES384 (a P-384 key), got %q", s.SigningAlg)
		}
	}
	if s.Scope != "" && s.Scope != smart.ScopeV2 && s.Scope != smart.ScopeV1 {
		bad("SmartScope: want %s or %s, got %q", smart.ScopeV2, smart.ScopeV1, s.Scope)
	}
}

func checkServiceURL(name, raw string, bad func(string, ...any)) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		bad("%s: want a blob endpoint URL such as https://account.blob.core.windows.net/", name)
	case u.RawQuery != "" || u.User != nil:
		// Never echo it: a query string here is usually a SAS token.
		bad("%s: must not carry a query string or credentials; access uses the managed identity", name)
	}
}
