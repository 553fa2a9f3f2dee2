// Package miniotest runs a real MinIO server (github.com/minio/minio) as
// a test's child process on 127.0.0.1, with a temporary data directory
// and one bucket. Tests skip when the minio binary is missing, and fail
// instead when WEIR_CI=1 (.ci/run installs it).
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/weirlabs/weir/internal/objstore"
)

// Credentials of the servers this package starts.
const (
	User     = "weirtest"
	Password = "weirtest-secret"
)

// Server is a running MinIO with one bucket.
type Server struct {
	Endpoint string // http://127.0.0.1:<port>
	Bucket   string

	t       testing.TB
	bin     string
	dir     string
	addr    string
	console string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *os.File
}

// Binary finds minio on PATH or in GOPATH/bin; without it the test
// skips, or fails when WEIR_CI=1.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "minio")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := "minio is missing: go install github.com/minio/minio@latest"
	if os.Getenv("WEIR_CI") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start starts MinIO with a new temporary directory and creates the
// bucket "weir". It is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		bin:     Binary(t),
		dir:     t.TempDir(),
		addr:    freePort(t),
		console: freePort(t),
		Bucket:  "weir",
	}
	s.Endpoint = "http://" + s.addr
	s.Restart()
	t.Cleanup(s.Stop)
	c := s.Client()
	// Ready can come a moment before the server takes requests ("Server
	// not initialized yet"): retry until it does.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
		var owned *types.BucketAlreadyOwnedByYou
		if err == nil || errors.As(err, &owned) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("miniotest: create bucket: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts the server again, on the same port and directory, after
// Stop (or starts it the first time), and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	out, err := os.OpenFile(filepath.Join(s.t.TempDir(), "minio.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, "server", filepath.Join(s.dir, "data"), "--quiet",
		"--address", s.addr, "--console-address", s.console)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+User, "MINIO_ROOT_PASSWORD="+Password,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off",
		"HOME="+s.dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		s.t.Fatalf("miniotest: start minio: %v", err)
	}
	s.cmd, s.out = cmd, out
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// Ready can come a moment before the server takes
				// requests ("Server not initialized yet").
				if _, err = s.Client().ListBuckets(context.Background(), &s3.ListBucketsInput{}); err == nil {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			s.t.Fatalf("miniotest: minio not ready after 60s: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: as a crash or a network cut looks to
// a client) and waits for it to exit. The data stays for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.out.Close()
	s.cmd = nil
}

// Config returns an S3 configuration for the server's bucket with the
// right credentials.
func (s *Server) Config() objstore.S3Config {
	return objstore.S3Config{
		Bucket: s.Bucket, Endpoint: s.Endpoint, Region: "us-east-1", PathStyle: true,
		AccessKeyID: User, SecretAccessKey: Password,
	}
}

// Store returns a store on the server's bucket.
func (s *Server) Store(t testing.TB) *objstore.S3 {
	t.Helper()
	st, err := objstore.NewS3(context.Background(), s.Config())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Client returns a plain S3 client for the server, for tests to look at
// the bucket independently of the code under test.
func (s *Server) Client() *s3.Client {
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(),
		awsconfig.WithRegion("us-east-1"),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(User, Password, "")))
	if err != nil {
		s.t.Fatal(err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
		o.UsePathStyle = true
	})
}

// Keys lists the keys under prefix with their sizes.
func (s *Server) Keys(t testing.TB, prefix string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("miniotest: list: %v", err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("minio at %s, bucket %s", s.Endpoint, s.Bucket) }
