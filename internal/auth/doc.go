// Package auth authenticates the requests to weir's port by API key and
// authorizes them by role.
//
// It stands in front of the whole mux (Connect, gRPC, gRPC-Web, /v1/sql,
// /metrics and the UI): [Authenticator.Handler] takes the key from the
// Authorization header, finds it by its SHA-256, checks that it holds the
// role the route needs ([Rule]) and hands the request on with a
// [Principal] in its context, which names the key, its tenant and its
// roles. Handlers further down read the tenant from the principal, never
// from the request.
//
// With no keys configured, authentication is off and every request acts
// with every role in the default tenant: weir's single-user mode on a
// loopback address.
package auth
