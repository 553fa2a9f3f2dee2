package auth

import (
	"encoding/base64"
	"strings"
)

// maxAuthorization bounds the Authorization header this package decodes.
// Tokens are about 50 bytes; a longer header is not a credential.
const maxAuthorization = 4 << 10

// credential returns the token an Authorization header value carries, in
// any of the forms clients of weir send:
//
//	Bearer <token>                 OAuth-style clients, weir's own
//	Basic base64(<user>:<token>)   Loki, Elasticsearch and Fluent Bit basic auth; any user name
//	Splunk <token>                 Splunk HEC
//	ApiKey <token>                 Elasticsearch clients
//
// The scheme is case-insensitive. A header longer than 4 KiB, an unknown
// scheme, bad base64, an empty token or one with spaces or control
// characters is not a credential: ok is false. It never fails otherwise.
func credential(header string) (token string, ok bool) {
	if len(header) > maxAuthorization {
		return "", false
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !found {
		return "", false
	}
	rest = strings.Trim(rest, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"), strings.EqualFold(scheme, "Splunk"), strings.EqualFold(scheme, "ApiKey"):
		token = rest
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, found := strings.Cut(string(raw), ":")
		if !found {
			return "", false
		}
		token = pass
	default:
		return "", false
	}
	if !validToken(token) {
		return "", false
	}
	return token, true
}

// validToken reports whether t could be a token: not empty, and printable
// ASCII without spaces.
func validToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
