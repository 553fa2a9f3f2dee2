package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"text/template"
	"time"
)

// Notification is one alert as receivers get it; a webhook without a
// body template is sent it as JSON.
type Notification struct {
	// Status is "firing" or "resolved".
	Status      string            `json:"status"`
	Rule        string            `json:"rule"`
	Tenant      string            `json:"tenant"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Value       float64           `json:"value"`
	StartsAt    time.Time         `json:"startsAt"`
	// EndsAt is when a resolved alert resolved; for a firing one sent to
	// the Alertmanager, when it expires unless sent again.
	EndsAt       time.Time `json:"endsAt,omitzero"`
	GeneratorURL string    `json:"generatorURL"`
}

// errPermanent marks a delivery that retrying cannot fix.
var errPermanent = errors.New("permanent")

// maxBackoff bounds the wait between retries.
const maxBackoff = 30 * time.Second

// notifier delivers batches of notifications to one receiver from a
// bounded queue, on its own goroutine, retrying failures with backoff. A
// full queue drops the new batch (counted): the Alertmanager gets every
// active alert again at the next resend.
type notifier struct {
	name    string // receiver label of the metrics
	send    func(ctx context.Context, batch []Notification) error
	q       chan []Notification
	retries int
	backoff time.Duration
	log     *slog.Logger
	m       *metrics
}

// enqueue queues a batch without waiting.
func (n *notifier) enqueue(batch []Notification) {
	select {
	case n.q <- batch:
	default:
		n.m.dropped.WithLabelValues(n.name).Add(float64(len(batch)))
		n.log.Warn("alert notifications dropped: the receiver's queue is full", "receiver", n.name, "alerts", len(batch))
	}
}

// run delivers batches until the queue is closed and empty. ctx ends
// retries and waits; batches left then fail at once.
func (n *notifier) run(ctx context.Context) {
	for batch := range n.q {
		n.deliver(ctx, batch)
	}
}

func (n *notifier) deliver(ctx context.Context, batch []Notification) {
	wait := n.backoff
	for attempt := 0; ; attempt++ {
		err := n.send(ctx, batch)
		if err == nil {
			n.m.sent.WithLabelValues(n.name).Add(float64(len(batch)))
			return
		}
		if errors.Is(err, errPermanent) || attempt >= n.retries || ctx.Err() != nil {
			n.m.failed.WithLabelValues(n.name).Add(float64(len(batch)))
			n.log.Error("alert notification failed", "receiver", n.name, "alerts", len(batch), "attempts", attempt+1, "err", err)
			return
		}
		n.m.retries.WithLabelValues(n.name).Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, maxBackoff)
	}
}

// post sends body and classifies the answer: 2xx is success, 4xx other
// than 408 and 429 permanent, anything else retryable.
func post(ctx context.Context, client *http.Client, url string, body []byte, headers map[string]string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "weir-alerts")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s answered %s: %s", errPermanent, url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return fmt.Errorf("%s answered %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
}

// amAlert is an alert of the Alertmanager's v2 API (postableAlert).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertmanagerSender posts batches to one Alertmanager.
func alertmanagerSender(client *http.Client, base string, timeout time.Duration) func(context.Context, []Notification) error {
	url := strings.TrimRight(base, "/") + "/api/v2/alerts"
	return func(ctx context.Context, batch []Notification) error {
		alerts := make([]amAlert, len(batch))
		for i, n := range batch {
			alerts[i] = amAlert{Labels: n.Labels, Annotations: n.Annotations, StartsAt: n.StartsAt, EndsAt: n.EndsAt, GeneratorURL: n.GeneratorURL}
		}
		body, err := json.Marshal(alerts)
		if err != nil {
			return fmt.Errorf("%w: %v", errPermanent, err)
		}
		return post(ctx, client, url, body, nil, timeout)
	}
}

// webhookSender posts each notification of a batch to a webhook, as its
// template renders it. The manager queues webhook notifications one a
// batch, so a retry never sends one twice.
func webhookSender(client *http.Client, w WebhookConfig) func(context.Context, []Notification) error {
	return func(ctx context.Context, batch []Notification) error {
		for _, n := range batch {
			body, err := renderWebhook(w.body, n)
			if err != nil {
				return err
			}
			if err := post(ctx, client, w.URL, body, w.Headers, w.Timeout); err != nil {
				return err
			}
		}
		return nil
	}
}

func renderWebhook(t *template.Template, n Notification) ([]byte, error) {
	if t == nil {
		return json.Marshal(n)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, n); err != nil {
		return nil, fmt.Errorf("%w: body template: %v", errPermanent, err)
	}
	if !json.Valid(b.Bytes()) {
		return nil, fmt.Errorf("%w: body template renders no valid JSON: %.200s", errPermanent, b.String())
	}
	return b.Bytes(), nil
}
