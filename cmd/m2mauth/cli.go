package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is what a command may touch of the outside world.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// stdin is read for confirmations, and only when interactive (it is
	// a terminal); nil: none.
	stdin       io.Reader
	interactive bool
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands is every command of the binary; groups (api, client) dispatch
// to their own sub-tables.
func commands() []command {
	return []command{
		{"serve", "run the authorization server", runServe},
		{"migrate", "apply pending database migrations and exit", runMigrate},
		{"api", "manage APIs (resource servers): create, list, show, update, delete", group("api", apiCommands())},
		{"client", "manage clients (applications): create, update, rotate-secret, import, …", group("client", clientCommands())},
		{"key", "signing keys: list, rotate, revoke, rewrap", group("key", keyCommands())},
		{"revocation", "revoke a token, list revocations", group("revocation", revocationCommands())},
		{"environment", "environments of the deployment (alias env): list, create, show, rename, delete", group("environment", environmentCommands())},
		{"trust", "trust policies for workload identities: create, list, show, update, delete", group("trust", trustCommands())},
		{"admin", "regain admin access (recover), console sign-in links", group("admin", adminCommands())},
		{"console", "print a one-time sign-in link of the admin console", runConsole},
		{"audit", "the audit trail: list (--follow to keep printing new events)", group("audit", auditCommands())},
		{"apply", "make the server match a configuration file (-f m2mauth.yaml)", runApply},
		{"export", "write the server's APIs and clients as a configuration file", runExport},
		{"token", "get an access token with the client-credentials grant", runToken},
		{"dpop", "DPoP proofs for curl (proof) and a DPoP key's thumbprint (thumbprint)", group("dpop", dpopCommands())},
		{"verify", "validate an access token as a resource server would", runVerify},
		{"bench", "performance: seed many clients, load a running server", group("bench", benchCommands())},
		{"version", "print the version, commit, Go version and crypto backend (also --version)", runVersion},
	}
}

// aliases are other names of top-level commands.
var aliases = map[string]string{"env": "environment"}

// errUsage marks an error whose usage text has been printed.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, e *env) int {
	err := dispatch(ctx, e, "m2mauth", commands(), args)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	default:
		fmt.Fprintln(e.stderr, "m2mauth:", err)
		return exitError
	}
}

func dispatch(ctx context.Context, e *env, prefix string, cmds []command, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		// Usage goes to standard error, like every message that is not
		// the command's result; asked for, it exits 0, else 2.
		w := e.stderr
		fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", prefix)
		for _, c := range cmds {
			fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags and environment variables.\n", prefix)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	name := args[0]
	if prefix == "m2mauth" {
		if a, ok := aliases[name]; ok {
			name = a
		}
		// m2mauth --version [--json] is m2mauth version [--json].
		if name == "--version" || name == "-version" {
			name = "version"
		}
	}
	for _, c := range cmds {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "%s: unknown command %q (run '%s --help')\n", prefix, args[0], prefix)
	return errUsage
}

func group(name string, cmds []command) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		return dispatch(ctx, e, "m2mauth "+name, cmds, args)
	}
}

// flags is a flag set whose flags also read environment variables.
type flags struct {
	*flag.FlagSet
	e        *env
	envNames map[string]string // flag name → variable ("": none)
	// envOnly, when set, limits the variables read to these flags and
	// those given one by setEnv: an admin command reads its connection
	// from the environment, never a resource's fields (a variable set for
	// another command, M2MAUTH_TOKEN_LIFETIME for serve or
	// M2MAUTH_AUDIENCE for token, must not silently configure a client).
	envOnly map[string]bool
	args    string // positional arguments, for usage
	summary string
}

// newFlags returns a flag set for "m2mauth <name>".
func newFlags(e *env, name, args, summary string) *flags {
	fs := flag.NewFlagSet("m2mauth "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &flags{FlagSet: fs, e: e, envNames: map[string]string{}, args: args, summary: summary}
	// flag.FlagSet.Parse calls Usage on -h/--help and on every parse
	// error: it prints nothing, and parse prints the usage once for
	// --help and a one-line error otherwise.
	fs.Usage = func() {}
	return f
}

// printUsage writes the command's usage, flags and variables to stderr.
func (f *flags) printUsage() {
	w := f.e.stderr
	fmt.Fprintf(w, "Usage: %s [flags] %s\n\n%s\n\nFlags (a flag with a $VARIABLE also reads it when not given):\n", f.Name(), f.args, f.summary)
	var names []string
	f.VisitAll(func(fl *flag.Flag) { names = append(names, fl.Name) })
	sort.Strings(names)
	for _, n := range names {
		fl := f.Lookup(n)
		typ, usage := flag.UnquoteUsage(fl)
		def := ""
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		dash := "--"
		if len(n) == 1 {
			dash = "-" // -f, -o
		}
		if v := f.envName(n); v != "" {
			fmt.Fprintf(w, "  %s%s %s\n      $%s\n      %s%s\n", dash, n, typ, v, usage, def)
		} else {
			fmt.Fprintf(w, "  %s%s %s\n      %s%s\n", dash, n, typ, usage, def)
		}
	}
}

// envName is the variable a flag reads: M2MAUTH_ + upper snake case,
// unless overridden with setEnv or switched off with noEnv ("").
func (f *flags) envName(name string) string {
	if v, ok := f.envNames[name]; ok {
		return v
	}
	if f.envOnly != nil && !f.envOnly[name] {
		return ""
	}
	return "M2MAUTH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *flags) setEnv(flagName, variable string) { f.envNames[flagName] = variable }

// parse parses args, then fills every flag not given on the command line
// from its environment variable. It returns the positional arguments.
func (f *flags) parse(args []string, minArgs, maxArgs int) ([]string, error) {
	// Flags may follow positional arguments (m2mauth api show ID --json).
	// After "--" everything is positional (a key id may start with "-").
	var rest, verbatim []string
	for i, a := range args {
		if a == "--" {
			args, verbatim = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printUsage()
				return nil, err
			}
			fmt.Fprintf(f.e.stderr, "%s: %v (run '%s --help')\n", f.Name(), err, f.Name())
			return nil, errUsage
		}
		args = f.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	rest = append(rest, verbatim...)
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var err error
	f.VisitAll(func(fl *flag.Flag) {
		if set[fl.Name] || err != nil {
			return
		}
		if f.envName(fl.Name) == "" {
			return
		}
		if v := f.e.getenv(f.envName(fl.Name)); v != "" {
			if serr := fl.Value.Set(v); serr != nil {
				err = fmt.Errorf("$%s: %v", f.envName(fl.Name), serr)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if len(rest) < minArgs || (maxArgs >= 0 && len(rest) > maxArgs) {
		fmt.Fprintf(f.e.stderr, "Usage: %s [flags] %s (run '%s --help')\n", f.Name(), f.args, f.Name())
		return nil, errUsage
	}
	return rest, nil
}

func osEnv() *env {
	fi, err := os.Stdin.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stdin: os.Stdin, interactive: tty}
}
