package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

func auditCommands() []command {
	return []command{
		{"list", "list the audit trail (--follow: keep printing new events)", auditList},
	}
}

// followLag is how far back each poll of --follow looks again: replicas
// write their events in batches (about a second apart), so an event can
// be stored after a newer one of another replica.
const followLag = 10 * time.Second

func auditList(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var client, action, kind, actor, since, until string
	var limit int
	var follow bool
	var interval time.Duration
	f := newFlags(e, "audit list", "", `Lists the audit trail of the environment, newest first: management changes (who, from
where, what changed), token issuances and failed client authentications. Events hold no
secrets. --follow prints the matching events of the last --since (default 10m), oldest
first, then every new one as it arrives, until interrupted (Ctrl-C); with --json, one JSON
object per line.`)
	f.StringVar(&client, "client", "", "only events about this client (its tokens, failed authentications and changes)")
	f.StringVar(&action, "action", "", "only this action (client.create), or a prefix ending in * (client.*)")
	f.StringVar(&kind, "kind", "", "only this kind: admin, token_issued, auth_failed or token_refused")
	f.StringVar(&actor, "actor", "", "only events by this actor (an admin client id, console:<client id>, system)")
	f.StringVar(&since, "since", "", "only events since: a duration before now (1h) or an RFC 3339 time")
	f.StringVar(&until, "until", "", "only events before: a duration before now or an RFC 3339 time")
	f.IntVar(&limit, "limit", 100, "at most this many events (without --follow; 0: all)")
	f.BoolVar(&follow, "follow", false, "keep printing new events as they arrive, until interrupted")
	f.DurationVar(&interval, "interval", 2*time.Second, "with --follow, how often to ask for new events")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"client": client, "action": action, "kind": kind, "actor": actor, "since": since, "until": until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if follow {
		if interval < 100*time.Millisecond {
			return fmt.Errorf("--interval must be at least 100ms")
		}
		if since == "" {
			q.Set("since", "10m")
		}
		return auditFollow(ctx, e, ac, q, out.json, interval)
	}
	if limit < 0 {
		return fmt.Errorf("--limit must be 0 (all) or more")
	}
	var items []admin.AuditEventResource
	for cursor := ""; ; {
		page, err := auditPage(ctx, ac, q, cursor, "", limit-len(items))
		if err != nil {
			return err
		}
		items = append(items, page.Items...)
		if cursor = page.NextCursor; cursor == "" || (limit > 0 && len(items) >= limit) {
			break
		}
	}
	if out.json {
		return printJSON(e.stdout, items)
	}
	printAudit(e.stdout, items)
	return nil
}

// auditPage fetches one page: before cursor (newest first), or after the
// event id after (oldest first); want caps its size (0: the maximum).
func auditPage(ctx context.Context, ac *adminClient, q url.Values, cursor, after string, want int) (admin.ListResponse[admin.AuditEventResource], error) {
	p := url.Values{}
	for k, v := range q {
		p[k] = v
	}
	if want <= 0 || want > admin.MaxPageSize {
		want = admin.MaxPageSize
	}
	p.Set("limit", strconv.Itoa(want))
	if cursor != "" {
		p.Set("cursor", cursor)
	}
	if after != "" {
		p.Set("after", after)
	}
	var page admin.ListResponse[admin.AuditEventResource]
	err := ac.do(ctx, http.MethodGet, "/admin/v1/audit?"+p.Encode(), nil, &page)
	return page, err
}

// auditFollow prints the matching events oldest first, then polls for new
// ones. Each poll asks again for the last followLag (events of other
// replicas can arrive late) and prints only those not printed yet.
func auditFollow(ctx context.Context, e *env, ac *adminClient, q url.Values, asJSON bool, interval time.Duration) error {
	seen := map[string]time.Time{}
	// The lowest id there is: every event, oldest first.
	after := strings.Repeat("0", 32)
	for {
		var fresh []admin.AuditEventResource
		for {
			page, err := auditPage(ctx, ac, q, "", after, 0)
			if err != nil {
				if errors.Is(ctx.Err(), context.Canceled) {
					return nil
				}
				return err
			}
			for _, ev := range page.Items {
				if _, ok := seen[ev.ID]; !ok {
					seen[ev.ID] = ev.Time
					fresh = append(fresh, ev)
				}
			}
			if len(page.Items) < admin.MaxPageSize {
				break
			}
			after = page.Items[len(page.Items)-1].ID
		}
		for _, ev := range fresh {
			if asJSON {
				if err := printJSONLine(e.stdout, ev); err != nil {
					return err
				}
				continue
			}
			// One line per event as it arrives: no table to align.
			fmt.Fprintln(e.stdout, strings.Join(auditRow(ev), "  "))
		}
		// Next time: from followLag before the newest event seen (an id
		// made of that instant and zeros sorts before every event of it).
		var newest time.Time
		for _, t := range seen {
			if t.After(newest) {
				newest = t
			}
		}
		if !newest.IsZero() {
			bound := newest.Add(-followLag)
			after = fmt.Sprintf("%016x%016x", bound.UnixMicro(), 0)
			for id, t := range seen {
				if t.Before(bound) {
					delete(seen, id)
				}
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// auditRow is an event's columns: time, kind, actor, source, action,
// target and a detail (the outcome, or the fields a change changed).
func auditRow(ev admin.AuditEventResource) []string {
	target := ""
	if ev.Target != nil {
		target = ev.Target.Type + ":" + ev.Target.ID
	}
	detail := ev.Outcome
	var diff map[string]json.RawMessage
	if detail == "" && json.Unmarshal(ev.Diff, &diff) == nil && len(diff) > 0 {
		detail = "changed " + strings.Join(slices.Sorted(maps.Keys(diff)), ",")
	}
	return []string{ev.Time.UTC().Format(time.RFC3339), ev.Kind, ev.Actor, ev.SourceIP, ev.Action, target, detail}
}

const auditHeader = "TIME\tKIND\tACTOR\tSOURCE\tACTION\tTARGET\tDETAIL"

// printAudit prints events as a table.
func printAudit(w io.Writer, items []admin.AuditEventResource) {
	rows := make([][]string, 0, len(items))
	for _, ev := range items {
		rows = append(rows, auditRow(ev))
	}
	table(w, auditHeader, rows)
}
