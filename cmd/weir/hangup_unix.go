//go:build unix

package main

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// onHangup calls fn on every SIGHUP until the returned stop is called;
// stop waits for a running fn.
func onHangup(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}
