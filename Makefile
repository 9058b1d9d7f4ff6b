# m2mauth — build, test and benchmark targets.
GO          ?= go
# bash: make fuzz reads PIPESTATUS.
SHELL       := /bin/bash
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test test-boring vet lint build build-pure bench bench-load fuzz compat screenshots

# test: formatting, vet, staticcheck, then every test with the race detector.
# PostgreSQL tests run when M2MAUTH_TEST_POSTGRES_DSN is set (and fail when
# CI is set but the DSN is not).
test: vet lint
	$(GO) test -race -count=1 -timeout 15m ./...

# test-boring: the tests again on the production build's crypto backend
# (BoringCrypto: needs cgo and a C compiler), so the backend cannot change
# behaviour: every package that signs, verifies, hashes or speaks TLS.
# Without -race (the race run is make test's), and without the packages
# whose tests exercise no crypto (storage, telemetry export) or drive
# Chromium (the console's pages, whose crypto make test already covers):
# CI runs both within its time budget.
BORING_SKIP_PKGS := /internal/store/|/internal/telemetry$$|/scripts/
test-boring:
	GOEXPERIMENT=boringcrypto CGO_ENABLED=1 $(GO) test -count=1 -timeout 15m \
	  -skip '^(TestConsoleInBrowser|TestBrowserHarnessSeesPageProblems)$$' \
	  $$($(GO) list ./... | grep -Ev '$(BORING_SKIP_PKGS)')

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

# Version and commit stamped into the binary (m2mauth version, the startup
# log line). Without git: the module version, else "devel".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT  ?= $(shell c="$$(git rev-parse HEAD 2>/dev/null)" && { git diff --quiet HEAD -- 2>/dev/null || c="$$c-dirty"; } && echo "$$c")
BUILDINFO := github.com/m2mauth/m2mauth/internal/buildinfo
LDFLAGS   ?= -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT)

# build: the production build. RSA (RS256, the default) signs about 2.5 times
# faster with BoringCrypto, the FIPS 140-validated module the Go toolchain
# ships (GOEXPERIMENT=boringcrypto), which needs cgo and linux/amd64 or
# linux/arm64. Elsewhere, or without a C compiler, it falls back to the
# pure-Go build and says why. m2mauth version prints the backend in use.
build:
	@goos="$$($(GO) env GOOS)"; goarch="$$($(GO) env GOARCH)"; cc="$$($(GO) env CC)"; cc="$${cc%% *}"; \
	  why=""; \
	  case "$$goos/$$goarch" in linux/amd64|linux/arm64) ;; *) why="boringcrypto needs linux/amd64 or linux/arm64, not $$goos/$$goarch";; esac; \
	  if [ -z "$$why" ] && ! command -v "$${cc:-gcc}" >/dev/null 2>&1; then why="no C compiler ($${cc:-gcc}) for cgo: install gcc"; fi; \
	  if [ -z "$$why" ]; then \
	    echo "build: production build (GOEXPERIMENT=boringcrypto, cgo) for $$goos/$$goarch"; \
	    set -x; CGO_ENABLED=1 GOEXPERIMENT=boringcrypto $(GO) build -ldflags "$(LDFLAGS)" -o bin/m2mauth ./cmd/m2mauth; \
	  else \
	    echo "build: $$why; building the pure-Go binary instead (as make build-pure)"; \
	    set -x; CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/m2mauth ./cmd/m2mauth; \
	  fi

# build-pure: Go's own cryptography, no cgo: a static binary for any
# GOOS/GOARCH.
build-pure:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/m2mauth ./cmd/m2mauth

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# bench-load: a throwaway server (SQLite, EdDSA then RS256) loaded with wrk
# through `m2mauth bench run`; settings in scripts/bench/load.sh.
bench-load:
	GO="$(GO)" bash scripts/bench/load.sh

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
