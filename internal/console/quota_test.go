package console_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// The application form sets a client's token quota (empty: the server's
// default, "unlimited": none), the edit form shows it back, the page
// describes it, and a limit it cannot read is named next to its field.
func TestAppQuota(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	f := appsGrantForm("Quota", "https://a.example", "r")
	f.Set("quota_per_minute", "10")
	f.Set("quota_per_day", "unlimited")
	id, _, _ := h.appsCreate(f)
	quotaOf := func() admin.QuotaInput {
		for _, c := range h.clients() {
			if c.ClientID == id {
				return c.Quota
			}
		}
		t.Fatalf("no client %s", id)
		return admin.QuotaInput{}
	}
	if q := quotaOf(); q != (admin.QuotaInput{PerMinute: 10, PerDay: -1}) {
		t.Fatalf("created with quota %+v", q)
	}
	if _, page, _ := h.get("/console/app/" + id); !strings.Contains(page, "10 per minute, unlimited per day") {
		t.Errorf("the page does not show the quota:\n%s", page)
	}
	_, page, _ := h.get("/console/app/" + id + "/edit")
	if inputValue(page, "quota_per_minute") != "10" || inputValue(page, "quota_per_hour") != "" || inputValue(page, "quota_per_day") != "unlimited" {
		t.Fatalf("edit form: quota fields %q %q %q", inputValue(page, "quota_per_minute"), inputValue(page, "quota_per_hour"), inputValue(page, "quota_per_day"))
	}
	f.Set("version", version(t, page))
	f.Set("quota_per_minute", "")
	f.Set("quota_per_hour", "500")
	if status, page, _ := h.post("/console/app/"+id+"/edit", f); status != http.StatusOK {
		t.Fatalf("save: %d %s", status, page)
	}
	if q := quotaOf(); q != (admin.QuotaInput{PerHour: 500, PerDay: -1}) {
		t.Errorf("after edit: quota %+v", q)
	}
	f.Set("quota_per_hour", "lots")
	if status, page, _ := h.post("/console/app/"+id+"/edit", f); status != http.StatusBadRequest || !strings.Contains(page, `id="quota_per_hour-err"`) {
		t.Errorf("an unreadable limit: %d", status)
	}
}
