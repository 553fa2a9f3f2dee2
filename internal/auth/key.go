package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// tokenPrefix begins every generated token, so that a leaked one is easy
// to recognise (and for secret scanners to find).
const tokenPrefix = "weir_"

// GenerateKey returns a new random token, "weir_" and the unpadded
// base64url encoding of 32 bytes from crypto/rand, and its hash for
// [Key.Hash]. The token is shown to the user once and stored nowhere.
func GenerateKey() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("auth: generate key: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken returns the hash of token in the form [Key.Hash] takes:
// "sha256:" and 64 lower-case hex digits.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}
