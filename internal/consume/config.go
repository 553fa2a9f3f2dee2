package consume

import (
	"errors"
	"fmt"
	"time"
)

// Config bounds subscriptions and says where groups keep their offsets.
type Config struct {
	// Dir holds the committed offsets of consumer groups, one file per
	// group: <Dir>/tenant=<t>/stream=<s>/group=<g>.json.
	Dir string
	// MaxBatchRecords bounds the records of one batch (and so what a
	// subscription holds in memory at once).
	MaxBatchRecords int
	// MaxTenantSubscriptions bounds the open subscriptions of one tenant;
	// past it Subscribe fails with ErrTooManySubscriptions.
	MaxTenantSubscriptions int
	// PollInterval is how often a subscription that has read everything
	// visible looks again while its stream's partitions have records it
	// has not read. A subscription that is caught up costs no query.
	PollInterval time.Duration
	// Heartbeat is how long Next waits without records before it returns
	// an empty batch, so that the caller sends something and finds out
	// whether the subscriber is still there.
	Heartbeat time.Duration
	// MaxGroups bounds the consumer groups the manager knows (with
	// committed offsets or members) over all tenants; past it a new group
	// is refused with ErrTooManyGroups.
	MaxGroups int
	// MaxDeliveries, when above 0, is how many times a group may deliver
	// a record that it does not commit: the member that would deliver it
	// once more writes it to the dead-letter stream instead (with the
	// group and the count) and the group commits past it. 0: no limit.
	MaxDeliveries int
	// GroupMaxDeliveries overrides MaxDeliveries for the groups it names
	// (by group name, in every tenant and stream).
	GroupMaxDeliveries map[string]int
}

// maxDeliveries is group's limit, 0 for none.
func (c Config) maxDeliveries(group string) int {
	if n, ok := c.GroupMaxDeliveries[group]; ok {
		return n
	}
	return c.MaxDeliveries
}

// DefaultConfig returns the defaults: batches of up to 1,000 records,
// 64 subscriptions per tenant, a poll every 100 ms, a heartbeat every
// 5 s, and no limit of deliveries.
func DefaultConfig() Config {
	return Config{
		MaxBatchRecords:        1000,
		MaxTenantSubscriptions: 64,
		PollInterval:           100 * time.Millisecond,
		Heartbeat:              5 * time.Second,
		MaxGroups:              10_000,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("consume: Dir is required")
	case c.MaxBatchRecords < 1:
		return fmt.Errorf("consume: MaxBatchRecords must be positive, got %d", c.MaxBatchRecords)
	case c.MaxTenantSubscriptions < 1:
		return fmt.Errorf("consume: MaxTenantSubscriptions must be positive, got %d", c.MaxTenantSubscriptions)
	case c.PollInterval <= 0:
		return fmt.Errorf("consume: PollInterval must be positive, got %s", c.PollInterval)
	case c.Heartbeat <= 0:
		return fmt.Errorf("consume: Heartbeat must be positive, got %s", c.Heartbeat)
	case c.MaxGroups < 1:
		return fmt.Errorf("consume: MaxGroups must be positive, got %d", c.MaxGroups)
	case c.MaxDeliveries < 0:
		return fmt.Errorf("consume: MaxDeliveries must not be negative, got %d", c.MaxDeliveries)
	}
	for g, n := range c.GroupMaxDeliveries {
		if n < 0 {
			return fmt.Errorf("consume: max deliveries of group %q must not be negative, got %d", g, n)
		}
	}
	return nil
}
