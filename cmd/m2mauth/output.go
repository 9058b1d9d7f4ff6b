package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// output prints results as a table or, with --json, as JSON.
type output struct{ json bool }

func (o *output) register(f *flags) {
	f.BoolVar(&o.json, "json", false, "print JSON instead of a table")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func lifetime(seconds int64) string {
	if seconds == 0 {
		return "default"
	}
	return (time.Duration(seconds) * time.Second).String()
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// listAll follows next_cursor through every page of a listing.
func listAll[T any](ctx context.Context, ac *adminClient, path string, q url.Values) ([]T, error) {
	items := []T{}
	for k, v := range q {
		if len(v) == 0 || v[0] == "" {
			delete(q, k)
		}
	}
	q.Set("limit", "1000")
	for {
		var page admin.ListResponse[T]
		if err := ac.do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.NextCursor == "" {
			return items, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

// setFlags reports which flags were given on the command line.
func setFlags(f *flags) map[string]bool {
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// kvFlag collects repeated KEY=VALUE values.
type kvFlag map[string]string

func (m *kvFlag) String() string { return "" }

func (m *kvFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	if *m == nil {
		*m = kvFlag{}
	}
	(*m)[k] = val
	return nil
}
