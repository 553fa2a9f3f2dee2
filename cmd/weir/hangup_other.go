//go:build !unix

package main

// onHangup does nothing where there is no SIGHUP; reload through the
// AdminService instead.
func onHangup(func()) (stop func()) { return func() {} }
