package admin

import (
	"time"

	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// BuiltinAdminAPI is the built-in admin API of an environment other than
// the default one (identifier: its issuer + "/admin"): it has the scope
// admin only (the deployment scope exists in the default environment).
func BuiltinAdminAPI(identifier, envDisplayName string, now time.Time) store.API {
	name := "m2mauth admin API"
	if envDisplayName != "" {
		name = envDisplayName + " admin API"
	}
	return store.API{
		ID: secret.NewID("api_"), Identifier: identifier, Name: name,
		Scopes: []string{AdminScope}, TokenLifetime: 15 * time.Minute, Builtin: adminBuiltin, Version: 1, CreatedAt: now, UpdatedAt: now,
	}
}
