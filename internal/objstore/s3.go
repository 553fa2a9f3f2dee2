package objstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config is how to reach a bucket.
type S3Config struct {
	Bucket string
	// Endpoint is the server's URL (http://127.0.0.1:9000 for a MinIO);
	// empty means AWS S3 itself.
	Endpoint string
	// Region; empty means the AWS chain's (AWS_REGION, shared config),
	// or us-east-1 when that has none.
	Region string
	// PathStyle addresses the bucket as <endpoint>/<bucket>/<key>
	// instead of <bucket>.<endpoint>/<key>; most S3-compatible servers
	// need it.
	PathStyle bool
	// AccessKeyID and SecretAccessKey, when set, are the credentials;
	// otherwise the standard AWS chain supplies them (AWS_ACCESS_KEY_ID
	// and AWS_SECRET_ACCESS_KEY, the shared credentials and config
	// files, an instance role).
	AccessKeyID, SecretAccessKey string
	// PartBytes is the part size of multipart uploads, used for files
	// larger than it; 0 means DefaultPartBytes. S3 wants at least 5 MiB.
	PartBytes int64
}

// DefaultPartBytes is the default multipart part size.
const DefaultPartBytes = 16 << 20

const minPartBytes = 5 << 20

// S3 is a Store on an S3 bucket.
type S3 struct {
	cfg    S3Config
	client *s3.Client
}

// NewS3 returns a Store for cfg.Bucket. It loads the AWS configuration
// (credentials are resolved lazily, at the first request) but does not
// contact the server: use Check for that.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("objstore: bucket must be set")
	}
	if cfg.PartBytes == 0 {
		cfg.PartBytes = DefaultPartBytes
	}
	if cfg.PartBytes < minPartBytes {
		return nil, fmt.Errorf("objstore: part size must be at least %d bytes, got %d", minPartBytes, cfg.PartBytes)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("objstore: set both the access key ID and the secret access key, or neither")
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("objstore: AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// The lake retries with its own backoff, which knows about
		// permanent errors and reports them; one attempt per call here.
		o.Retryer = aws.NopRetryer{}
		// Put sends its own CRC32C; no second, streamed one.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return &S3{cfg: cfg, client: client}, nil
}

// Check makes sure the bucket exists and the credentials may use it.
func (s *S3) Check(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)})
	if err != nil {
		err = classify("check bucket "+s.cfg.Bucket, "", err)
		var e *Error
		if errors.As(err, &e) && e.Code == "NotFound" {
			e.Code, e.Permanent = "NoSuchBucket", true
			e.Err = fmt.Errorf("bucket %q does not exist", s.cfg.Bucket)
		}
		return err
	}
	return nil
}

// URI returns s3://<bucket>/<key>.
func (s *S3) URI(key string) string { return "s3://" + s.cfg.Bucket + "/" + key }

// Put uploads the file at path as key: in one request up to PartBytes,
// as a multipart upload above. Each request carries the CRC32C of its
// data, which the server verifies before storing anything; Put then
// compares the stored size with the file's.
func (s *S3) Put(ctx context.Context, key, path string, meta map[string]string) (Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return Object{}, fmt.Errorf("objstore: put %q: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Object{}, fmt.Errorf("objstore: put %q: %w", key, err)
	}
	size := st.Size()
	if size > s.cfg.PartBytes {
		err = s.putMultipart(ctx, key, f, size, meta)
	} else {
		err = s.putOne(ctx, key, f, size, meta)
	}
	if err != nil {
		return Object{}, err
	}
	obj, err := s.Head(ctx, key)
	if err != nil {
		return Object{}, err
	}
	if obj.Size != size {
		return Object{}, &Error{Op: "put", Key: key, Err: fmt.Errorf("stored %d bytes, the file has %d", obj.Size, size)}
	}
	return obj, nil
}

func crcOf(r io.Reader) (string, error) {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, h.Sum32())), nil
}

func (s *S3) putOne(ctx context.Context, key string, f *os.File, size int64, meta map[string]string) error {
	sum, err := crcOf(io.NewSectionReader(f, 0, size))
	if err != nil {
		return fmt.Errorf("objstore: put %q: read: %w", key, err)
	}
	out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(key),
		Body:              io.NewSectionReader(f, 0, size),
		ContentLength:     aws.Int64(size),
		Metadata:          meta,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumCRC32C:    aws.String(sum),
	})
	if err != nil {
		return classify("put", key, err)
	}
	if got := aws.ToString(out.ChecksumCRC32C); got != "" && got != sum {
		return &Error{Op: "put", Key: key, Err: fmt.Errorf("server's CRC32C %s, sent %s", got, sum)}
	}
	return nil
}

func (s *S3) putMultipart(ctx context.Context, key string, f *os.File, size int64, meta map[string]string) error {
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(key),
		Metadata:          meta,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		return classify("put (create multipart upload)", key, err)
	}
	abort := func(cause error) error {
		// A fresh context: the caller's may be the reason to give up.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if _, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key), UploadId: created.UploadId,
		}); err != nil {
			return errors.Join(cause, classify("put (abort multipart upload)", key, err))
		}
		return cause
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+s.cfg.PartBytes, n+1 {
		plen := min(s.cfg.PartBytes, size-off)
		sum, err := crcOf(io.NewSectionReader(f, off, plen))
		if err != nil {
			return abort(fmt.Errorf("objstore: put %q: read: %w", key, err))
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:            aws.String(s.cfg.Bucket),
			Key:               aws.String(key),
			UploadId:          created.UploadId,
			PartNumber:        aws.Int32(n),
			Body:              io.NewSectionReader(f, off, plen),
			ContentLength:     aws.Int64(plen),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
			ChecksumCRC32C:    aws.String(sum),
		})
		if err != nil {
			return abort(classify(fmt.Sprintf("put (part %d)", n), key, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumCRC32C: aws.String(sum)})
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.cfg.Bucket),
		Key:             aws.String(key),
		UploadId:        created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(classify("put (complete multipart upload)", key, err))
	}
	return nil
}

const abortTimeout = 30 * time.Second

// Head describes the object at key.
func (s *S3) Head(ctx context.Context, key string) (Object, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return Object{}, classify("head", key, err)
	}
	meta := make(map[string]string, len(out.Metadata))
	for k, v := range out.Metadata {
		meta[strings.ToLower(k)] = v
	}
	return Object{Key: key, Size: aws.ToInt64(out.ContentLength), Meta: meta}, nil
}

// Get downloads the object at key into a new file at path.
func (s *S3) Get(ctx context.Context, key, path string) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return classify("get", key, err)
	}
	defer out.Body.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("objstore: get %q: %w", key, err)
	}
	n, err := io.Copy(f, out.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && out.ContentLength != nil && n != *out.ContentLength {
		err = fmt.Errorf("got %d bytes of %d", n, *out.ContentLength)
	}
	if err != nil {
		os.Remove(path)
		return &Error{Op: "get", Key: key, Err: err}
	}
	return nil
}

// Delete deletes the object at key.
func (s *S3) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		err = classify("delete", key, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// List calls fn for every object under prefix, in key order.
func (s *S3) List(ctx context.Context, prefix string, fn func(Object) error) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify("list", prefix, err)
		}
		for _, o := range page.Contents {
			if err := fn(Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// permanentCodes are S3 error codes that retrying will not fix.
var permanentCodes = map[string]bool{
	"InvalidAccessKeyId":           true,
	"SignatureDoesNotMatch":        true,
	"AccessDenied":                 true,
	"AllAccessDisabled":            true,
	"AccountProblem":               true,
	"InvalidToken":                 true,
	"ExpiredToken":                 true,
	"NoSuchBucket":                 true,
	"InvalidBucketName":            true,
	"PermanentRedirect":            true,
	"AuthorizationHeaderMalformed": true,
}

// classify wraps an SDK error as an *Error; a missing object also
// matches ErrNotFound.
func classify(op, key string, err error) error {
	e := &Error{Op: op, Key: key, Err: err}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Code = ae.ErrorCode()
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case permanentCodes[e.Code], status == http.StatusForbidden:
		e.Permanent = true
		e.Err = fmt.Errorf("%s: check the bucket name and the credentials: %w", hint(e.Code, status), err)
	case e.Code == "NoSuchKey" || e.Code == "NotFound" || status == http.StatusNotFound:
		e.Err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return e
}

func hint(code string, status int) string {
	switch {
	case code == "NoSuchBucket":
		return "the bucket does not exist"
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || strings.Contains(code, "Token"):
		return "the server refused the credentials"
	case code != "":
		return "the server refused the request (" + code + ")"
	default:
		return fmt.Sprintf("the server refused the request (HTTP %d)", status)
	}
}
