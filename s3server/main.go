// voxpulse-s3: a small S3-compatible server for VoxPulse's tests and for trying the insights receiver's
// S3 storage on one machine: gofakes3 (MIT) with its filesystem backend (s3afero), every request's AWS
// Signature Version 4 checked with the AWS SDK's own signer (gofakes3 checks none).
//
//	VOXPULSE_S3_ACCESS_KEY_ID=... VOXPULSE_S3_SECRET_ACCESS_KEY=... \
//	  voxpulse-s3 -listen 127.0.0.1:0 -dir /tmp/s3 -bucket calls
//
// The credentials come from the environment only (no defaults). It prints "listening on http://ADDR"
// once it accepts connections (-listen with port 0: a free port).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
)

const maxSkew = 15 * time.Minute

type verifier struct {
	keyID, secret, region string
	signer                *v4.Signer
	next                  http.Handler
}

func deny(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"+
		"<Message>%s</Message></Error>", why)
}

// ServeHTTP re-signs the request's signed headers with the secret and compares the signatures.
func (v *verifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		deny(w, "a request signed with AWS Signature Version 4 is required")
		return
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = val
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] != v.keyID || scope[2] != v.region || scope[3] != "s3" {
		deny(w, "unknown access key id or wrong scope")
		return
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || at.Sub(time.Now()).Abs() > maxSkew {
		deny(w, "X-Amz-Date missing or too far from now")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		deny(w, "unreadable body")
		return
	}
	sum := sha256.Sum256(body)
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload != hex.EncodeToString(sum[:]) {
		deny(w, "X-Amz-Content-Sha256 is not the body's SHA-256")
		return
	}
	check, _ := http.NewRequestWithContext(context.Background(), r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	check.Host = r.Host
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		if h != "host" {
			check.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	creds := aws.Credentials{AccessKeyID: v.keyID, SecretAccessKey: v.secret}
	if err := v.signer.SignHTTP(context.Background(), creds, check, payload, "s3", v.region, at); err != nil {
		deny(w, "cannot sign: "+err.Error())
		return
	}
	want := check.Header.Get("Authorization")
	if subtle.ConstantTimeCompare([]byte(want), []byte(auth)) != 1 {
		deny(w, "the signature does not match")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	v.next.ServeHTTP(w, r)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8333", "host:port (port 0: a free port, printed)")
	dir := flag.String("dir", "", "folder for the buckets' objects (created)")
	bucket := flag.String("bucket", "", "a bucket to create at start (comma-separated for several)")
	region := flag.String("region", "us-east-1", "the region requests must be signed for")
	flag.Parse()
	keyID, secret := os.Getenv("VOXPULSE_S3_ACCESS_KEY_ID"), os.Getenv("VOXPULSE_S3_SECRET_ACCESS_KEY")
	if keyID == "" || secret == "" || *dir == "" {
		log.Fatal("set VOXPULSE_S3_ACCESS_KEY_ID and VOXPULSE_S3_SECRET_ACCESS_KEY, and pass -dir")
	}
	fs, err := s3afero.FsPath(*dir, s3afero.FsPathCreateAll)
	if err != nil {
		log.Fatal(err)
	}
	backend, err := s3afero.MultiBucket(fs)
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range strings.Split(*bucket, ",") {
		if name != "" {
			if err := backend.CreateBucket(name); err != nil && !gofakes3.IsAlreadyExists(err) {
				log.Fatal(err)
			}
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithAutoBucket(false))
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: &verifier{keyID, secret, *region, signer, faker.Server()}, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
