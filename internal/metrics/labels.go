package metrics

// The bounded label values. Each index function maps what an outcome
// carries to one of them; a value the server does not define (a grant type
// the caller typed, a code added later) becomes "other", an empty one
// "none": nothing a caller sent can become a label.

const (
	other = "other"
	none  = "none"
)

var surfaceNames = [...]string{"standard", "machine", "atm", "admin", other}

const nSurfaces = len(surfaceNames)

func surfaceIndex(s string) int {
	switch s {
	case "standard":
		return 0
	case "machine":
		return 1
	case "atm":
		return 2
	case "admin":
		return 3
	}
	return 4
}

var grantNames = [...]string{"client_credentials", "refresh_token", none, other}

const nGrants = len(grantNames)

func grantIndex(g string) int {
	switch g {
	case "client_credentials":
		return 0
	case "refresh_token":
		return 1
	case "":
		return 2
	}
	return 3
}

var methodNames = [...]string{"client_secret_basic", "client_secret_post", "private_key_jwt", "federated",
	"tls_client_auth", "self_signed_tls_client_auth", none, other}

const nMethods = len(methodNames)

func methodIndex(m string) int {
	switch m {
	case "client_secret_basic":
		return 0
	case "client_secret_post":
		return 1
	case "private_key_jwt":
		return 2
	case "federated":
		return 3
	case "tls_client_auth":
		return 4
	case "self_signed_tls_client_auth":
		return 5
	case "":
		return 6
	}
	return 7
}

var codeNames = [...]string{"ok", "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
	"unsupported_grant_type", "invalid_scope", "invalid_target", "server_error", "temporarily_unavailable",
	"too_many_requests", "invalid_dpop_proof", "use_dpop_nonce", other}

const nCodes = len(codeNames)

func codeIndex(c string) int {
	for i, n := range codeNames[:nCodes-1] {
		if n == c {
			return i
		}
	}
	return nCodes - 1
}

var algNames = [...]string{"RS256", "PS256", "ES256", "EdDSA", other}

const nAlgs = len(algNames)

func algIndex(a string) int {
	for i, n := range algNames[:nAlgs-1] {
		if n == a {
			return i
		}
	}
	return nAlgs - 1
}

var endpointNames = [...]string{"token", "introspect", "revoke", other}

const nEndpoints = len(endpointNames)

func endpointIndex(e string) int {
	switch e {
	case "token":
		return 0
	case "introspect":
		return 1
	case "revoke":
		return 2
	}
	return 3
}

var opNames = [...]string{"query", "exec", "begin", "commit", "rollback", "prepare", "ping", other}

const nOps = len(opNames)

func opIndex(op string) int {
	for i, n := range opNames[:nOps-1] {
		if n == op {
			return i
		}
	}
	return nOps - 1
}
