package main

// m2mauth bench: seed a database with many clients (seed) and measure a
// running server (run).
//
// The credentials file that seed writes and run reads is text, one client
// per line: "<client_id>\t<client_secret>\n". Lines starting with "#" are
// comments; seed writes one first line "# m2mauth bench credentials: audience=<aud>"
// naming the API every seeded client holds a grant for.

func benchCommands() []command {
	return []command{
		{"seed", "bulk-insert many clients straight into the database (not the admin API) and write their credentials", runBenchSeed},
		{"run", "load a running server (wrk) and report tokens/s, p50/p99, errors, server CPU per request and RSS", runBenchRun},
	}
}
