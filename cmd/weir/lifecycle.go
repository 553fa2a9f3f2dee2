package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// stage is a part of the running service with weir's one lifecycle:
// Start begins its background work (ctx bounds start-up only) and
// Shutdown drains and stops it within ctx. Shutdown must be safe without
// Start and more than once.
type stage interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// stopper is a stage whose constructor already started it (or that has
// no background work): it only needs shutting down.
type stopper interface {
	Shutdown(ctx context.Context) error
}

// lifecycle starts the stages of the service in the order they are added,
// back to front (what consumes before what produces), and shuts them down
// in reverse order, front to back, so that every stage drains into one
// that still runs. A stage is shut down even if its Start failed.
type lifecycle struct {
	log    *slog.Logger
	stages []named
}

type named struct {
	name string
	s    stopper
}

// start adds s and starts it.
func (l *lifecycle) start(ctx context.Context, name string, s stage) error {
	l.stages = append(l.stages, named{name, s})
	if err := s.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// add adds s, which runs already.
func (l *lifecycle) add(name string, s stopper) {
	l.stages = append(l.stages, named{name, s})
}

// shutdown shuts every stage down, the last added first, each within
// ctx, and returns their errors joined. It goes on past a failing stage:
// the stages behind it still drain what they hold.
func (l *lifecycle) shutdown(ctx context.Context) error {
	var errs []error
	for i := len(l.stages) - 1; i >= 0; i-- {
		st := l.stages[i]
		if err := st.s.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down %s: %w", st.name, err))
		} else if l.log != nil {
			l.log.Debug("stage shut down", "stage", st.name)
		}
	}
	l.stages = nil
	return errors.Join(errs...)
}
