package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/durable"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform"
)

// DeadLetters reads a tenant's dead letters after a position, in position
// order, as query.Engine.Scan does; it returns how many it read.
type DeadLetters func(ctx context.Context, tenant string, from Position, limit int, fn func(Position, record.Record) error) (int, error)

// Position is a record's partition and offset in its stream.
type Position struct {
	Partition int32
	Offset    int64
}

// ReplayStats counts what a replay did.
type ReplayStats struct {
	Read, Replayed, FailedAgain, Dropped, Skipped uint64
}

// Replayer sends a tenant's dead letters through their streams' current
// processors again. Each dead letter is replayed once: a state file per
// tenant remembers, per original stream and dead-letter partition, the
// last offset replayed, and replayed batches are pushed as an
// idempotent producer (one per dead-letter partition, sequence = offset+1)
// so a crash between pushing and saving the state duplicates nothing.
type Replayer struct {
	svc   *Service
	read  DeadLetters
	state string

	mu sync.Mutex // one replay at a time
}

// NewReplayer returns a replayer pushing through svc, reading with read
// and keeping the default tenant's state in the file statePath, and
// another tenant's beside it with the tenant in its name
// (dead_letter_replay.json, dead_letter_replay.tenant=acme.json).
func NewReplayer(svc *Service, read DeadLetters, statePath string) *Replayer {
	return &Replayer{svc: svc, read: read, state: statePath}
}

// replayState is the last replayed offset by original stream and
// dead-letter partition.
type replayState map[string]map[string]int64

// replayProducer names the idempotent producer of replays from a
// dead-letter partition.
func replayProducer(p int32) string { return "weir.replay/" + strconv.Itoa(int(p)) }

// Replay replays the dead letters not replayed before whose original
// stream is in streams (all if empty). Replayed records are durable when
// it returns nil.
func (rp *Replayer) Replay(ctx context.Context, tenant string, streams []string) (ReplayStats, error) {
	if err := record.ValidateTenant(tenant); err != nil {
		return ReplayStats{}, connect.NewError(connect.CodeInvalidArgument, err)
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	statePath := rp.statePath(tenant)
	st, err := rp.load(statePath)
	if err != nil {
		return ReplayStats{}, err
	}
	var stats ReplayStats
	var receipt *buffer.Receipt
	var pending int
	flush := func() error {
		if receipt == nil {
			return nil
		}
		wctx, cancel := waitContext(ctx, rp.svc.cfg.PushTimeout, rp.svc.now())
		defer cancel()
		if err := receipt.Wait(wctx, buffer.Durable); err != nil && !errors.Is(err, buffer.ErrNoWAL) {
			return rp.svc.connectErr(wctx, err)
		}
		receipt, pending = nil, 0
		return rp.save(statePath, st)
	}
	var partsBuf [4]*record.Batch
	one := func(pos Position, dl record.Record) error {
		stats.Read++
		stream, r, ok := transform.Revive(dl)
		if !ok || (len(streams) > 0 && !slices.Contains(streams, stream)) {
			stats.Skipped++
			return nil
		}
		key := strconv.Itoa(int(pos.Partition))
		if last, ok := st[stream][key]; ok && pos.Offset <= last {
			return nil // replayed before
		}
		b := record.NewBatch(tenant, stream, []record.Record{r})
		b.ProducerID, b.Sequence, b.SequenceGaps = replayProducer(pos.Partition), uint64(pos.Offset)+1, true
		parts, err := rp.svc.proc.Process(partsBuf[:0], b)
		if err != nil {
			// Still invalid, and its stream has no processors: a new dead
			// letter, so that it can be replayed again later.
			d := rp.svc.proc.DeadLetter(&r, stream, "validate", err.Error())
			parts = append(partsBuf[:0], &record.Batch{Tenant: tenant, Stream: logschema.DeadLetterStream,
				Records: []record.Record{d}, ProducerID: b.ProducerID + "/" + stream, Sequence: b.Sequence, SequenceGaps: true})
			parts[0].Bytes = d.Size()
		}
		switch {
		case len(parts) == 0:
			stats.Dropped++
		case parts[len(parts)-1].Stream == logschema.DeadLetterStream:
			stats.FailedAgain++
		default:
			stats.Replayed++
		}
		for _, p := range parts {
			r, err := rp.svc.enqueue(ctx, p)
			if err != nil {
				return err
			}
			receipt = receipt.Join(r)
		}
		if st[stream] == nil {
			st[stream] = map[string]int64{}
		}
		st[stream][key] = pos.Offset
		if pending++; pending >= 1000 {
			return flush()
		}
		return nil
	}
	from := Position{Partition: -1, Offset: -1}
	for {
		n, err := rp.read(ctx, tenant, from, 10000, func(pos Position, r record.Record) error {
			from = pos
			return one(pos, r)
		})
		if err != nil {
			return stats, errors.Join(err, flush())
		}
		if n < 10000 {
			break
		}
	}
	return stats, flush()
}

// statePath is the state file of tenant's replays.
func (rp *Replayer) statePath(tenant string) string {
	if tenant == record.DefaultTenant {
		return rp.state
	}
	ext := filepath.Ext(rp.state)
	return strings.TrimSuffix(rp.state, ext) + ".tenant=" + tenant + ext
}

func (rp *Replayer) load(path string) (replayState, error) {
	st := replayState{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead-letter replay state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("dead-letter replay state %s: %w", path, err)
	}
	return st, nil
}

// save writes the state atomically: temporary file, fsync, rename.
func (rp *Replayer) save(path string, st replayState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := durable.WriteFile(path, data); err != nil {
		return fmt.Errorf("dead-letter replay state: %w", err)
	}
	return nil
}
