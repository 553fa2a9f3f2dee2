//go:build !unix

package main

// lockDataDir does nothing where flock is not available: run one server
// per data directory.
func lockDataDir(string) (func(), error) { return func() {}, nil }
