package sink

// referencedLocked reports whether the object at key must not be
// deleted yet: Remote.Referenced says a reader may still be sent to it.
// r.mu must be held.
func (r *remote) referencedLocked(key string) bool {
	return r.cfg.Referenced != nil && r.cfg.Referenced(r.cfg.Store.URI(key))
}

// WakeRemote makes the lake try again the deletions that wait because
// Remote.Referenced reported their objects referenced: call it when
// that may have changed (after an Iceberg pass committed). Deletions
// that wait are not retried otherwise, except when the lake's own
// uploads and deletions go on. It never blocks; without Config.Remote
// it does nothing.
func (l *Lake) WakeRemote() {
	if l.rem == nil {
		return
	}
	select {
	case l.rem.wake <- struct{}{}:
	default:
	}
}
