package sqlstore

import (
	"database/sql"
	"database/sql/driver"
)

// Option changes how a backend opens its database.
type Option func(*options)

type options struct {
	wrap []func(driver.Connector) driver.Connector
}

// WithConnector has a backend open its database through wrap(its driver's
// connector): instrumentation (telemetry.WrapConnector) sits there. The
// connector wrap returns must keep the optional interfaces of the
// connections it wraps.
func WithConnector(wrap func(driver.Connector) driver.Connector) Option {
	return func(o *options) { o.wrap = append(o.wrap, wrap) }
}

// OpenDB opens a database on a driver's connector, wrapped as opts say.
func OpenDB(c driver.Connector, opts ...Option) *sql.DB {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	for _, w := range o.wrap {
		c = w(c)
	}
	return sql.OpenDB(c)
}
