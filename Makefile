# m2mauth — build, test and benchmark targets.
GO          ?= go
# bash: make fuzz reads PIPESTATUS.
SHELL       := /bin/bash
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test vet lint build bench fuzz compat screenshots

# test: formatting, vet, staticcheck, then every test with the race detector.
# PostgreSQL tests run when M2MAUTH_TEST_POSTGRES_DSN is set (and fail when
# CI is set but the DSN is not).
test: vet lint
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

lint:
	$(STATICCHECK) ./...

# screenshots: the console's pages at 1280 and 390 px, taken by its browser
# test (Chromium: /usr/bin/chromium or M2MAUTH_CHROMIUM), into docs/console/
# for the README.
screenshots:
	M2MAUTH_SCREENSHOTS="$(CURDIR)/docs/console" $(GO) test -count=1 -run '^TestConsoleInBrowser$$' ./internal/server

build:
	CGO_ENABLED=0 $(GO) build -o bin/m2mauth ./cmd/m2mauth

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# fuzz: every fuzz target of the tree (found by name, so a new one is not
# forgotten) for FUZZTIME each, after its seed corpus (f.Add and
# testdata/fuzz/<target>/). go test -fuzz takes one package and one target
# per run. A failing input is saved under testdata/fuzz/<target>/.
FUZZTIME ?= 5s
fuzz:
	@targets="$$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . \
	  | sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort -u)"; \
	  [ -n "$$targets" ] || { echo "fuzz: no targets found"; exit 1; }; \
	  log="$$(mktemp)"; trap 'rm -f "$$log"' EXIT; \
	  echo "$$targets" | while read -r pkg name; do \
	    echo "fuzz: $$pkg $$name for $(FUZZTIME)"; \
	    for attempt in 1 2; do \
	      $(GO) test "$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) 2>&1 | tee "$$log"; \
	      [ "$${PIPESTATUS[0]}" -eq 0 ] && break; \
	      if grep -q 'Failing input written to' "$$log" || [ "$$attempt" -eq 2 ]; then exit 1; fi; \
	      echo "fuzz: $$name stopped without a failing input (the fuzzer's own shutdown, e.g. context deadline exceeded): once more"; \
	    done; \
	  done

# compat: clients written with the libraries of the source services' documents
# (Node.js axios, Express + jsonwebtoken + jwks-rsa, Python stdlib), and
# private_key_jwt clients (openid-client 5 and 6, Python Authlib).
compat:
	bash scripts/compat/run.sh
