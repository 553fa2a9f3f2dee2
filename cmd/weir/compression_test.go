package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestSmallMessagesUncompressed: to a client that accepts gzip, a push's
// small acknowledgement comes uncompressed and a query's large chunks
// compressed, in the Connect protocol spoken by hand (so the wire shows
// which it got).
func TestSmallMessagesUncompressed(t *testing.T) {
	s := startServer(t, "", nil)

	// Unary: a push's answer is a few bytes.
	req, err := http.NewRequest(http.MethodPost, s.url+"/weir.v1.IngestService/Push",
		strings.NewReader(`{"stream": "app", "records": [{"body": "hello"}], "ackLevel": "ACK_LEVEL_DURABLE"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := http.DefaultTransport.RoundTrip(req) // no transparent gunzip
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Encoding") != "" || !bytes.Contains(body, []byte(`"accepted":1`)) {
		t.Errorf("push answer: %d, Content-Encoding %q, %q", res.StatusCode, res.Header.Get("Content-Encoding"), body)
	}

	// Server streaming: a query's data chunk of ~100 KB is compressed,
	// its last message (row count) is not.
	var env bytes.Buffer
	msg := []byte(`{"sql": "SELECT i, repeat('x', 100) AS pad FROM range(1000) t(i)", "format": "RESULT_FORMAT_CSV"}`)
	env.WriteByte(0)
	binary.Write(&env, binary.BigEndian, uint32(len(msg)))
	env.Write(msg)
	req, err = http.NewRequest(http.MethodPost, s.url+"/weir.v1.QueryService/Query", &env)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Connect-Accept-Encoding", "gzip")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Connect-Content-Encoding") != "gzip" {
		t.Fatalf("query: %d, Connect-Content-Encoding %q", res.StatusCode, res.Header.Get("Connect-Content-Encoding"))
	}
	var flags []byte
	var csv []byte
	for {
		var head [5]byte
		if _, err := io.ReadFull(res.Body, head[:]); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, binary.BigEndian.Uint32(head[1:]))
		if _, err := io.ReadFull(res.Body, data); err != nil {
			t.Fatal(err)
		}
		compressed := head[0]&1 != 0
		if compressed {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if head[0]&2 == 0 { // a message, not the end of the stream
			if big := len(data) >= compressMinBytes; big != compressed {
				t.Errorf("a message of %d bytes: compressed %t", len(data), compressed)
			}
			if i := bytes.Index(data, []byte(`"data":"`)); i >= 0 {
				csv = append(csv, data[i:]...)
			}
		}
		flags = append(flags, head[0])
	}
	if len(flags) < 2 || len(csv) < 100_000 {
		t.Errorf("query stream: flags %v, %d bytes of data", flags, len(csv))
	}
}
