// Command envload measures token issuance across many environments of a
// running m2mauth server, over HTTP, the way issue 13's acceptance asks:
//
//	go run ./scripts/envload -setup -envs 10000 -admin m2mauth-data/admin.json -out creds.json
//	go run ./scripts/envload -creds creds.json -duration 20s -conns 16
//	go run ./scripts/envload -creds creds.json -duration 20s -conns 16 -only 1
//
// -setup creates the environments (through the admin API, as a deployment
// admin), each with an API and one client, and writes their credentials.
// A run then asks for tokens for clients picked at random (among every
// environment, or among the first -only environments' clients) and prints
// the rate and latency percentiles.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type cred struct {
	Env    string `json:"env"`
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

type adminFile struct {
	Server       string `json:"server"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Audience     string `json:"audience"`
}

func main() {
	setup := flag.Bool("setup", false, "create the environments and write their clients' credentials to -out")
	envs := flag.Int("envs", 1000, "environments to create (-setup)")
	clientsPer := flag.Int("clients", 1, "clients per environment (-setup)")
	adminPath := flag.String("admin", "m2mauth-data/admin.json", "the bootstrap admin's credentials (-setup)")
	out := flag.String("out", "creds.json", "where -setup writes the credentials")
	credsPath := flag.String("creds", "creds.json", "credentials to run with")
	server := flag.String("server", "", "server URL (default: admin.json's, or http://127.0.0.1:8080)")
	duration := flag.Duration("duration", 20*time.Second, "how long to run")
	conns := flag.Int("conns", 16, "concurrent connections")
	only := flag.Int("only", 0, "use the clients of the first N environments only (0: all)")
	prefix := flag.String("prefix", "load-", "names of the environments -setup creates: <prefix><number>")
	flag.Parse()
	if *setup {
		if err := runSetup(*adminPath, *server, *out, *prefix, *envs, *clientsPer); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := runLoad(*credsPath, *server, *duration, *conns, *only); err != nil {
		log.Fatal(err)
	}
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}

func runSetup(adminPath, server, out, prefix string, n, clientsPer int) error {
	b, err := os.ReadFile(adminPath)
	if err != nil {
		return err
	}
	var a adminFile
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if server == "" {
		server = a.Server
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"admin deployment"}, "audience": {a.Audience}}
	req, _ := http.NewRequest(http.MethodPost, server+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(a.ClientID, a.ClientSecret)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := do(req, http.StatusOK, &tok); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	call := func(method, path string, body any, want int, into any) error {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, server+path, bytes.NewReader(j))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		return do(req, want, into)
	}
	start := time.Now()
	creds := make([]cred, n*clientsPer)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				name := fmt.Sprintf("%s%05d", prefix, i)
				if err := call(http.MethodPost, "/admin/v1/environments", map[string]any{"name": name, "display_name": name}, http.StatusCreated, nil); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
				if err := call(http.MethodPost, "/e/"+name+"/admin/v1/apis", map[string]any{"identifier": "https://api.example.com", "name": "Orders", "scopes": []string{"orders:read"}}, http.StatusCreated, nil); err != nil {
					errs <- fmt.Errorf("api in %s: %w", name, err)
					return
				}
				for j := range clientsPer {
					var c cred
					if err := call(http.MethodPost, "/e/"+name+"/admin/v1/clients", map[string]any{"name": "load", "grants": []map[string]any{{"audience": "https://api.example.com", "scopes": []string{"orders:read"}}}, "default_audience": "https://api.example.com"}, http.StatusCreated, &c); err != nil {
						errs <- fmt.Errorf("client in %s: %w", name, err)
						return
					}
					c.Env = name
					creds[i*clientsPer+j] = c
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	log.Printf("created %d environments (%d clients) in %s", n, len(creds), time.Since(start).Round(time.Millisecond))
	j, _ := json.Marshal(creds)
	return os.WriteFile(out, j, 0o600)
}

func do(req *http.Request, want int, into any) error {
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, res.StatusCode, body)
	}
	if into != nil {
		return json.Unmarshal(body, into)
	}
	return nil
}

func runLoad(path, server string, d time.Duration, conns, only int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var creds []cred
	if err := json.Unmarshal(b, &creds); err != nil {
		return err
	}
	if only > 0 {
		keep := map[string]bool{}
		creds = slices.DeleteFunc(creds, func(c cred) bool {
			if len(keep) < only {
				keep[c.Env] = true
			}
			return !keep[c.Env]
		})
	}
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	envs := map[string]bool{}
	for _, c := range creds {
		envs[c.Env] = true
	}
	body := "grant_type=client_credentials&scope=orders%3Aread"
	var mu sync.Mutex
	var lat []time.Duration
	var fails atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				c := creds[rand.IntN(len(creds))]
				req, _ := http.NewRequest(http.MethodPost, server+"/e/"+c.Env+"/oauth/token", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(c.ID, c.Secret)
				t := time.Now()
				res, err := client.Do(req)
				if err != nil {
					fails.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					fails.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond)
	}
	fmt.Printf("%d environments, %d clients, %d connections, %s: %.0f tokens/s, p50 %s, p99 %s, %d failed\n",
		len(envs), len(creds), conns, d, float64(len(lat))/d.Seconds(), pct(0.5), pct(0.99), fails.Load())
	return nil
}
