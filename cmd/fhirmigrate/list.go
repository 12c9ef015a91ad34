package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// statuses are the statuses of a migration (list --status takes them).
var statuses = []string{"planning", "exporting", "importing", "verifying", "syncing", "completed", "failed", "canceled"}

// maxTop is the largest page the service gives: list --all asks for it unless --top says otherwise.
const maxTop = 500

func setupList(fs *flagSet) runner {
	top := fs.int64("top", "ask for pages of `N` migrations, 1 to 500 (default: the service's, 50)")
	all := fs.boolean("all", "follow the continuation tokens: every migration")
	token := fs.str("continuation-token", "start at the page this `TOKEN` names (printed after a page that has more)")
	status := fs.list("status", true, "only migrations in these `STATUSES` (comma-separated; filtered here, in the pages read: the API has no filter)")
	asJSON := fs.boolean("json", "print the summaries as the service gives them: one JSON array, one summary a line")
	return func(ctx context.Context, inv *invocation) (int, error) {
		for _, s := range status.items {
			if !slices.Contains(statuses, s) {
				return 2, &usageError{fmt.Sprintf("list: --status %q is not a status (%s)", s, strings.Join(statuses, ", ")), lookupCommand("list").help()}
			}
		}
		size := *top
		if size == 0 && *all {
			size = maxTop
		}
		var rows []json.RawMessage
		next := *token
		for {
			q := url.Values{}
			if size != 0 {
				q.Set("top", strconv.FormatInt(size, 10))
			}
			if next != "" {
				q.Set("continuationToken", next)
			}
			path := "/api/migrations"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			raw, _, err := inv.c.send(ctx, http.MethodGet, path, nil)
			if err != nil {
				return 1, err
			}
			var page struct {
				Migrations        []json.RawMessage `json:"migrations"`
				ContinuationToken string            `json:"continuationToken"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return 1, fmt.Errorf("the migration list: %w", err)
			}
			for _, m := range page.Migrations {
				if len(status.items) > 0 {
					var s struct {
						Status string `json:"status"`
					}
					_ = json.Unmarshal(m, &s)
					if !slices.Contains(status.items, s.Status) {
						continue
					}
				}
				rows = append(rows, m)
			}
			next = page.ContinuationToken
			if next == "" || !*all {
				break
			}
		}
		if *asJSON {
			if err := writeJSONArray(inv.out, rows); err != nil {
				return 1, err
			}
		} else if err := writeTable(inv.out, rows, inv.now()); err != nil {
			return 1, err
		}
		if next != "" {
			more := inv.prog + " list"
			if *top != 0 {
				more += " --top " + strconv.FormatInt(*top, 10)
			}
			for _, s := range status.items {
				more += " --status " + s
			}
			if *asJSON {
				more += " --json"
			}
			fmt.Fprintf(inv.errOut, "more migrations: %s --continuation-token %s (or --all)\n", more, next)
		}
		return 0, nil
	}
}

// writeJSONArray writes the summaries as one JSON array, one compact summary a line.
func writeJSONArray(out io.Writer, rows []json.RawMessage) error {
	var b bytes.Buffer
	b.WriteString("[")
	for i, r := range rows {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n")
		if err := json.Compact(&b, r); err != nil {
			return fmt.Errorf("the migration list: %w", err)
		}
	}
	if len(rows) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	_, err := out.Write(b.Bytes())
	return err
}

// summary is one migration of the list (internal/migration.Summary).
type summary struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Progress    struct {
		ResourcesExported int64 `json:"resourcesExported"`
		ResourcesImported int64 `json:"resourcesImported"`
	} `json:"progress"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
}

// writeTable writes the summaries as an aligned table, numbers right-aligned.
func writeTable(out io.Writer, rows []json.RawMessage, now time.Time) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, "no migrations")
		return err
	}
	sums := make([]summary, len(rows))
	exportedWidth, importedWidth := len("EXPORTED"), len("IMPORTED")
	for i, r := range rows {
		if err := json.Unmarshal(r, &sums[i]); err != nil {
			return fmt.Errorf("the migration list: %w", err)
		}
		exportedWidth = max(exportedWidth, len(strconv.FormatInt(sums[i].Progress.ResourcesExported, 10)))
		importedWidth = max(importedWidth, len(strconv.FormatInt(sums[i].Progress.ResourcesImported, 10)))
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tSTATUS\tSOURCE -> DESTINATION\tCREATED (UTC)\tUPDATED\t%*s  %*s\n", exportedWidth, "EXPORTED", importedWidth, "IMPORTED")
	for _, s := range sums {
		status := s.Status
		if s.Error != nil && s.Error.Code != "" {
			status += " (" + s.Error.Code + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%s\t%s\t%*d  %*d\n", s.ID, status, shortURL(s.Source), shortURL(s.Destination),
			stamp(s.CreatedAt), age(s.UpdatedAt, now), exportedWidth, s.Progress.ResourcesExported, importedWidth, s.Progress.ResourcesImported)
	}
	return tw.Flush()
}

// azureFHIRSuffix ends the host of an Azure API for FHIR server and of an AHDS FHIR service: the list leaves it out.
const azureFHIRSuffix = ".azurehealthcareapis.com"

// maxURL bounds a server's width in the list; a longer one keeps its start and end.
const maxURL = 40

// shortURL is a server's base URL without its scheme, the Azure FHIR hosts' common suffix and a trailing slash,
// cut in the middle when still long.
func shortURL(raw string) string {
	s := raw
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		s = strings.TrimSuffix(u.Host, azureFHIRSuffix) + strings.TrimSuffix(u.EscapedPath(), "/")
	}
	if s == "" {
		return "?"
	}
	if r := []rune(s); len(r) > maxURL {
		half := (maxURL - 3) / 2
		s = string(r[:half]) + "..." + string(r[len(r)-(maxURL-3-half):])
	}
	return s
}

// stamp writes a time to the minute, UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// age writes how long ago t was, coarsely.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}
