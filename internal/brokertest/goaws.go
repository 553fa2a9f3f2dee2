package brokertest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Goaws is an SQS emulator (github.com/Admiral-Piett/goaws v0.4.5) run as
// the test's child. It speaks SQS's query protocol only, while the AWS
// SDK speaks the JSON protocol, so the source talks to it through
// translate, which maps the four calls the source makes.
type Goaws struct {
	// Base is goaws itself, which speaks the query protocol; Endpoint
	// is the translating front, for the AWS SDK.
	Base, Endpoint string
	account        string
}

// QueueURL returns the URL of queue name.
func (g *Goaws) QueueURL(name string) string { return g.Base + "/" + g.account + "/" + name }

// goawsBinary finds goaws on PATH or in GOPATH/bin; without it the test
// skips, or fails when WEIR_CI=1.
func goawsBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("goaws"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "goaws")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := "goaws is missing: go install github.com/Admiral-Piett/goaws/app/cmd@v0.4.5 and rename the binary cmd to goaws"
	if os.Getenv("WEIR_CI") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// StartGoaws runs goaws with queue name and name_dead, the redrive
// target of name after maxReceive receives, with the given visibility
// timeout in seconds.
func StartGoaws(t testing.TB, name string, visibility, maxReceive int) *Goaws {
	t.Helper()
	bin := goawsBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	const account = "100010001000"
	// goaws v0.4.5 binds 0.0.0.0 whatever Host says; Host names the
	// queues' URLs. The port is a free loopback one for the test's life.
	conf := fmt.Sprintf(`Local:
  Host: 127.0.0.1
  Port: %d
  AccountId: "%s"
  LogToFile: false
  QueueAttributeDefaults:
    VisibilityTimeout: %d
    ReceiveMessageWaitTimeSeconds: 0
    MaximumMessageSize: 262144
  Queues:
    - Name: %s_dead
    - Name: %s
      RedrivePolicy: '{"maxReceiveCount": %d, "deadLetterTargetArn": "arn:aws:sqs:us-east-1:%s:%s_dead"}'
  Topics: []
`, port, account, visibility, name, name, maxReceive, account, name)
	dir := t.TempDir()
	path := filepath.Join(dir, "goaws.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path, "Local")
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("goaws:\n%s", logs.String())
		}
	})
	g := &Goaws{Base: fmt.Sprintf("http://127.0.0.1:%d", port), account: account}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(g.Base + "/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("goaws exited: %s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("goaws did not answer in 30s: %v", err)
		}
	}
	front := httptest.NewServer(translate(g.Base))
	t.Cleanup(front.Close)
	g.Endpoint = front.URL
	return g
}

// query calls goaws with the query protocol and decodes its XML answer
// into out.
func query(base string, form url.Values, out any) error {
	resp, err := http.PostForm(base+"/", form)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		xml.Unmarshal(raw, &e)
		return &queryError{status: resp.StatusCode, code: e.Code, msg: e.Message + string(raw)}
	}
	if out == nil {
		return nil
	}
	return xml.Unmarshal(raw, out)
}

type queryError struct {
	status    int
	code, msg string
}

func (e *queryError) Error() string { return e.code + ": " + e.msg }

// translate serves the SQS JSON protocol for the calls the source makes
// (ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch,
// GetQueueAttributes) by calling goaws at base.
func translate(base string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
		var in map[string]any
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		str := func(k string) string { s, _ := in[k].(string); return s }
		num := func(k string) string {
			if f, ok := in[k].(float64); ok {
				return strconv.Itoa(int(f))
			}
			return ""
		}
		list := func(k string) []map[string]any {
			var out []map[string]any
			for _, e := range in[k].([]any) {
				out = append(out, e.(map[string]any))
			}
			return out
		}
		var out any
		var err error
		switch op {
		case "ReceiveMessage":
			form := url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {str("QueueUrl")}, "MessageAttributeName.1": {"All"}, "AttributeName.1": {"All"}}
			if v := num("MaxNumberOfMessages"); v != "" {
				form.Set("MaxNumberOfMessages", v)
			}
			if v := num("WaitTimeSeconds"); v != "" {
				form.Set("WaitTimeSeconds", v)
			}
			var res struct {
				Messages []struct {
					MessageId, ReceiptHandle, MD5OfBody, Body string
					Attribute                                 []struct{ Name, Value string }
					MessageAttribute                          []struct {
						Name  string
						Value struct{ DataType, StringValue, BinaryValue string }
					}
				} `xml:"ReceiveMessageResult>Message"`
			}
			if err = query(base, form, &res); err == nil {
				msgs := []map[string]any{}
				for _, m := range res.Messages {
					attrs := map[string]string{}
					for _, a := range m.Attribute {
						attrs[a.Name] = a.Value
					}
					mattrs := map[string]any{}
					for _, a := range m.MessageAttribute {
						mattrs[a.Name] = map[string]any{"DataType": a.Value.DataType, "StringValue": a.Value.StringValue}
					}
					msgs = append(msgs, map[string]any{"MessageId": m.MessageId, "ReceiptHandle": m.ReceiptHandle,
						"MD5OfBody": m.MD5OfBody, "Body": m.Body, "Attributes": attrs, "MessageAttributes": mattrs})
				}
				out = map[string]any{"Messages": msgs}
			}
		case "DeleteMessageBatch":
			form := url.Values{"Action": {"DeleteMessageBatch"}, "QueueUrl": {str("QueueUrl")}}
			for i, e := range list("Entries") {
				form.Set(fmt.Sprintf("DeleteMessageBatchRequestEntry.%d.Id", i+1), e["Id"].(string))
				form.Set(fmt.Sprintf("DeleteMessageBatchRequestEntry.%d.ReceiptHandle", i+1), e["ReceiptHandle"].(string))
			}
			var res struct {
				Ok     []struct{ Id string }                `xml:"DeleteMessageBatchResult>DeleteMessageBatchResultEntry"`
				Failed []struct{ Id, Code, Message string } `xml:"DeleteMessageBatchResult>BatchResultErrorEntry"`
			}
			if err = query(base, form, &res); err == nil {
				ok, failed := []map[string]any{}, []map[string]any{}
				for _, e := range res.Ok {
					ok = append(ok, map[string]any{"Id": e.Id})
				}
				for _, e := range res.Failed {
					failed = append(failed, map[string]any{"Id": e.Id, "Code": e.Code, "Message": e.Message, "SenderFault": true})
				}
				out = map[string]any{"Successful": ok, "Failed": failed}
			}
		case "ChangeMessageVisibilityBatch":
			ok, failed := []map[string]any{}, []map[string]any{}
			for _, e := range list("Entries") {
				form := url.Values{"Action": {"ChangeMessageVisibility"}, "QueueUrl": {str("QueueUrl")},
					"ReceiptHandle": {e["ReceiptHandle"].(string)}, "VisibilityTimeout": {strconv.Itoa(int(e["VisibilityTimeout"].(float64)))}}
				if qerr := query(base, form, nil); qerr != nil {
					failed = append(failed, map[string]any{"Id": e["Id"], "Code": "Failed", "Message": qerr.Error(), "SenderFault": true})
				} else {
					ok = append(ok, map[string]any{"Id": e["Id"]})
				}
			}
			out = map[string]any{"Successful": ok, "Failed": failed}
		case "GetQueueAttributes":
			form := url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {str("QueueUrl")}, "AttributeName.1": {"All"}}
			var res struct {
				Attrs []struct{ Name, Value string } `xml:"GetQueueAttributesResult>Attribute"`
			}
			if err = query(base, form, &res); err == nil {
				attrs := map[string]string{}
				for _, a := range res.Attrs {
					attrs[a.Name] = a.Value
				}
				out = map[string]any{"Attributes": attrs}
			}
		default:
			err = &queryError{status: http.StatusBadRequest, code: "InvalidAction", msg: op + " is not translated"}
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if err != nil {
			code := "InternalError"
			status := http.StatusInternalServerError
			if qe, ok := err.(*queryError); ok {
				code, status = qe.code, qe.status
			}
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + code, "message": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(out)
	})
}

// Send puts a message on queue name, with string attributes.
func (g *Goaws) Send(t testing.TB, name, body string, attrs map[string]string) {
	t.Helper()
	form := url.Values{"Action": {"SendMessage"}, "QueueUrl": {g.QueueURL(name)}, "MessageBody": {body}}
	i := 1
	for k, v := range attrs {
		form.Set(fmt.Sprintf("MessageAttribute.%d.Name", i), k)
		form.Set(fmt.Sprintf("MessageAttribute.%d.Value.DataType", i), "String")
		form.Set(fmt.Sprintf("MessageAttribute.%d.Value.StringValue", i), v)
		i++
	}
	if err := query(g.Base, form, nil); err != nil {
		t.Fatal(err)
	}
}

// Depth returns the messages of queue name: visible, and in flight.
func (g *Goaws) Depth(t testing.TB, name string) (visible, inFlight int) {
	t.Helper()
	var res struct {
		Attrs []struct{ Name, Value string } `xml:"GetQueueAttributesResult>Attribute"`
	}
	if err := query(g.Base, url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {g.QueueURL(name)}, "AttributeName.1": {"All"}}, &res); err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Attrs {
		switch a.Name {
		case "ApproximateNumberOfMessages":
			visible, _ = strconv.Atoi(a.Value)
		case "ApproximateNumberOfMessagesNotVisible":
			inFlight, _ = strconv.Atoi(a.Value)
		}
	}
	return visible, inFlight
}

// Receive receives up to 10 messages of queue name, without deleting
// them, and returns their bodies.
func (g *Goaws) Receive(t testing.TB, name string) []string {
	t.Helper()
	var res struct {
		Bodies []string `xml:"ReceiveMessageResult>Message>Body"`
	}
	if err := query(g.Base, url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {g.QueueURL(name)}, "MaxNumberOfMessages": {"10"}}, &res); err != nil {
		t.Fatal(err)
	}
	return res.Bodies
}
