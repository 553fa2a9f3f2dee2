// Package objstore is the little of object storage that the lake needs:
// put a local file under a key (verified by checksum), head, get into a
// local file, delete and list. Its S3 implementation (S3) talks to AWS S3
// or any S3-compatible server (MinIO, Ceph, R2...) through the AWS SDK for
// Go v2, the library weir already uses for its SQS source: one library
// for AWS.
package objstore

import (
	"context"
	"errors"
	"fmt"
)

// Store is a bucket of objects. Keys are the full object keys in the
// bucket. Implementations must be safe for concurrent use.
type Store interface {
	// Put uploads the local file at path as key, replacing any object
	// there, and returns the object once the server confirmed it whole:
	// the server checks the checksum sent with the data, and Put checks
	// the stored size. A Put that fails leaves either the old object or
	// the new one, never a part of it. meta is stored with the object as
	// its user metadata (keys in lower case; nil for none) and returned
	// by Head.
	Put(ctx context.Context, key, path string, meta map[string]string) (Object, error)
	// Head describes the object at key, or returns an error matching
	// ErrNotFound.
	Head(ctx context.Context, key string) (Object, error)
	// Get downloads the object at key into a new file at path (written
	// in place: callers wanting atomicity write a temporary name and
	// rename it).
	Get(ctx context.Context, key, path string) error
	// Delete deletes the object at key; deleting a missing object is not
	// an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in
	// key order, until fn returns an error (which List returns).
	List(ctx context.Context, prefix string, fn func(Object) error) error
	// URI returns the s3:// URI of key.
	URI(key string) string
}

// Object describes a stored object.
type Object struct {
	Key  string
	Size int64
	// Meta is the object's user metadata, keys in lower case. Head and
	// Put set it; List does not (S3 does not list it).
	Meta map[string]string
}

// ErrNotFound is matched (errors.Is) by the error of Head and Get for a
// missing object.
var ErrNotFound = errors.New("objstore: no such object")

// Error is an error of a store operation, classified: Permanent errors
// (bad credentials, a missing bucket, access denied) need an operator,
// and retrying soon will not help; the others (network, server busy or
// failing) are worth retrying with backoff.
type Error struct {
	Op, Key   string
	Permanent bool
	// Code is the server's error code (e.g. "InvalidAccessKeyId",
	// "NoSuchBucket"), empty when there was no answer.
	Code string
	Err  error
}

func (e *Error) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	if e.Key == "" {
		return fmt.Sprintf("objstore: %s (%s): %v", e.Op, kind, e.Err)
	}
	return fmt.Sprintf("objstore: %s %q (%s): %v", e.Op, e.Key, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is an *Error marked Permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}
