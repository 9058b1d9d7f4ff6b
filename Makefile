# m2mauth — build, test and benchmark targets.
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test vet lint build bench fuzz compat

# test: formatting, vet, staticcheck, then every test with the race detector.
# PostgreSQL tests run when M2MAUTH_TEST_POSTGRES_DSN is set (and fail when
# CI is set but the DSN is not).
test: vet lint
	$(GO) test -race -count=1 ./...

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

lint:
	$(STATICCHECK) ./...

build:
	CGO_ENABLED=0 $(GO) build -o bin/m2mauth ./cmd/m2mauth

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test ./internal/oauth -run '^$$' -fuzz FuzzParseTokenRequest -fuzztime 30s

# compat: clients written with the libraries of the source services' documents
# (Node.js axios, Express + jsonwebtoken + jwks-rsa, Python stdlib).
compat:
	bash scripts/compat/run.sh
