package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/auth"
)

const keyUsage = `usage: weir key new [flags]   make an API key: prints its token once and the config entry
       weir key hash          read a token on stdin and print the hash the config file holds

Run 'weir key new -h' for its flags.`

// keyCmd is `weir key`.
func keyCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, keyUsage)
		return fmt.Errorf("%w: weir key: no subcommand", errUsage)
	}
	switch args[0] {
	case "new":
		return keyNewCmd(args[1:], stdout, stderr)
	case "hash":
		return keyHashCmd(args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, keyUsage)
		return nil
	}
	fmt.Fprintln(stderr, keyUsage)
	return fmt.Errorf("%w: weir key: unknown subcommand %q", errUsage, args[0])
}

// keyNewCmd is `weir key new`.
func keyNewCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir key new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the key's name in logs, unique among the keys (default: key- and the start of its hash)")
	tenant := fs.String("tenant", "", "the tenant the key acts in (default: the default tenant)")
	roles := fs.String("roles", "ingest", "what the key may do, a comma list of ingest, query, tail, admin, metrics")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir key new [flags]\n\nMakes a random API key. Its token is printed once, here, and stored nowhere;\nthe configuration file holds only its hash, under auth.keys.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	rs, err := auth.ParseRoles(*roles)
	if err != nil {
		return fmt.Errorf("%w: --roles: %v", errUsage, err)
	}
	token, hash, err := auth.GenerateKey()
	if err != nil {
		return err
	}
	key := auth.Key{Name: *name, Hash: hash, Tenant: *tenant, Roles: rs}
	if key.Name == "" {
		key.Name = "key-" + strings.TrimPrefix(hash, "sha256:")[:8]
	}
	// The checks the server makes at start, so the entry printed loads.
	if _, err := auth.New(auth.Config{Keys: []auth.Key{key}}); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var entry struct {
		Auth struct {
			Keys []auth.Key `yaml:"keys"`
		} `yaml:"auth"`
	}
	entry.Auth.Keys = []auth.Key{key}
	var snippet bytes.Buffer
	enc := yaml.NewEncoder(&snippet)
	enc.SetIndent(2)
	if err := enc.Encode(entry); err != nil {
		return fmt.Errorf("encode the config entry: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode the config entry: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "Token of key %q (shown only once: store it now, weir keeps only its hash):\n\n%s\n\nAdd the key to the configuration file:\n\n%s",
		key.Name, token, snippet.String())
	return err
}

// maxTokenInput bounds what `weir key hash` reads: a token with its line
// ending, far above any token's length.
const maxTokenInput = 4 << 10

// keyHashCmd is `weir key hash`.
func keyHashCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir key hash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir key hash < token\n\nReads a token on stdin (not as an argument, which shell history would keep)\nand prints its hash, as auth.keys[].hash takes it.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: weir key hash reads the token on stdin, not as an argument", errUsage)
	}
	raw, err := io.ReadAll(io.LimitReader(stdin, maxTokenInput+1))
	if err != nil {
		return fmt.Errorf("read the token: %w", err)
	}
	if len(raw) > maxTokenInput {
		return fmt.Errorf("%w: stdin holds more than %d bytes; give one token", errUsage, maxTokenInput)
	}
	token := strings.TrimRight(string(raw), "\r\n")
	if token == "" {
		return fmt.Errorf("%w: no token on stdin", errUsage)
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return errors.New("the token holds spaces, control or non-ASCII characters: no client could send it")
	}
	_, err = fmt.Fprintln(stdout, auth.HashToken(token))
	return err
}
