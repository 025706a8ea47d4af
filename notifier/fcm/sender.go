package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
)

// Config configures an [Sender].
type Config struct {
	// ProjectID is the Firebase project id. Default: the project_id of
	// CredentialsFile.
	ProjectID string
	// CredentialsFile is the path of a service-account JSON file. The sender
	// fetches OAuth2 access tokens from the file's token_uri, also when
	// Endpoint is set.
	CredentialsFile string
	// Endpoint is the base URL of an FCM-HTTP-v1-compatible server, such as
	// "http://127.0.0.1:9099"; messages go to
	// {Endpoint}/v1/projects/{ProjectID}/messages:send. Without
	// CredentialsFile, requests carry no Authorization. Default: Google's FCM.
	Endpoint string
	// HTTPClient, if set, is the client requests go through: its Transport
	// carries them, under the sender's own layers (authentication, and the
	// recording of 503 answers, see [Sender.Send]), and its Timeout
	// applies. Default: a client on Go's default transport keeping up to 100
	// idle connections per host, as Google's libraries do. (Google's mTLS
	// options such as GOOGLE_API_USE_CLIENT_CERTIFICATE are not used: FCM
	// does not need them.)
	HTTPClient *http.Client
}

// Sender sends messages with firebase-admin-go's messaging client. It is
// safe for concurrent use.
type Sender struct {
	client *messaging.Client
}

// messagingScope is the OAuth2 scope of FCM HTTP v1.
const messagingScope = "https://www.googleapis.com/auth/firebase.messaging"

// sendEachMax is the most messages firebase-admin-go's SendEach takes at once.
const sendEachMax = 500

// NewSender returns a sender for cfg. How it authenticates:
//
//   - CredentialsFile set: OAuth2 with that service account, against the
//     file's token_uri (with or without Endpoint).
//   - Endpoint set, no CredentialsFile: no authentication at all. The sender
//     never looks for credentials nor asks a metadata server for anything.
//   - Neither: Google's application default credentials, as on GCP
//     (GOOGLE_APPLICATION_CREDENTIALS, gcloud's user credentials, or the
//     metadata server of GCE, GKE, Cloud Run). This is the production mode
//     without a key file; the project id may then come from those
//     credentials or from GOOGLE_CLOUD_PROJECT.
//
// It returns an error when the credentials file cannot be read or parsed,
// or when no project id can be determined. It makes no network call except,
// in the last mode, what credential discovery needs.
//
// ctx is kept (without its cancellation) by Google's auth library for
// fetching access tokens later.
func NewSender(ctx context.Context, cfg Config) (*Sender, error) {
	ctx = context.WithoutCancel(ctx)
	projectID := cfg.ProjectID
	var authOpts []option.ClientOption
	switch {
	case cfg.CredentialsFile != "":
		data, err := os.ReadFile(cfg.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("read FCM credentials: %w", err)
		}
		var file struct {
			ProjectID string `json:"project_id"`
		}
		if err := json.Unmarshal(data, &file); err != nil {
			return nil, fmt.Errorf("parse FCM credentials %s: %w", cfg.CredentialsFile, err)
		}
		if projectID == "" {
			projectID = file.ProjectID
		}
		authOpts = []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, data), option.WithScopes(messagingScope)}
	case cfg.Endpoint != "":
		authOpts = []option.ClientOption{option.WithoutAuthentication()}
	default:
		authOpts = []option.ClientOption{option.WithScopes(messagingScope)} // application default credentials
	}
	if projectID == "" && (cfg.Endpoint != "" || cfg.CredentialsFile != "") {
		return nil, errors.New("no FCM project id: set it, or use a credentials file with a project_id")
	}

	// followpush exports Prometheus metrics, not OpenTelemetry: without
	// this every request also goes through otelhttp's wrapper (about 3 %
	// of a worker's CPU at full load).
	authOpts = append(authOpts, option.WithTelemetryDisabled())
	// The sender always brings its own HTTP client, so that answerRecorder
	// sees FCM's raw answers (see [Sender.Send]).
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	base := hc.Transport
	if base == nil {
		base = defaultTransport()
	}
	hc.Transport = answerRecorder{next: base}
	if cfg.CredentialsFile != "" || cfg.Endpoint == "" {
		rt, err := htransport.NewTransport(ctx, hc.Transport, authOpts...)
		if err != nil {
			return nil, fmt.Errorf("FCM credentials: %w", err)
		}
		hc.Transport = rt
	}
	// authOpts stay for firebase.NewApp's project id discovery; requests
	// go through hc.
	opts := append(authOpts, option.WithHTTPClient(&hc))
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimRight(cfg.Endpoint, "/")+"/v1"))
	}

	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase messaging client: %w", err)
	}
	return &Sender{client: client}, nil
}

// Send sends msgs and returns one error per message, in order: nil when FCM
// accepted it. One message goes out with the SDK's Send, several with
// SendEach, 500 at a time (one HTTP request per message, 50 at once).
//
// The errors are firebase-admin-go's own, unwrapped, so that its checks
// (messaging.IsUnregistered, errorutils.HTTPResponse, ...) work on them; pass
// them to [Classify]. A message the SDK refuses before sending (no token,
// say) gets an error that Classify reports as [OutcomeInvalidMessage]; as
// SendEach refuses a whole batch for one such message, every message of that
// batch gets the same error.
//
// The SDK retries network errors and 503s itself (up to 4 times,
// honouring Retry-After up to 2 minutes): bound ctx with a deadline. A
// deadline that ends during the SDK's wait between retries would surface as
// a bare context.DeadlineExceeded, FCM's answer lost; so when FCM had
// answered 503 before the deadline, the error is an [*UnavailableError]
// with FCM's Retry-After instead, which [Classify] reports as
// [OutcomeUnavailable] and [RetryAfter] honours. (SendEach shares one
// deadline among its messages: each message cut off by it gets the longest
// Retry-After of any 503 within the call.)
func (s *Sender) Send(ctx context.Context, msgs []*messaging.Message) (errs []error) {
	_, errs = s.SendNamed(ctx, msgs)
	return errs
}

// SendNamed is [Sender.Send] that also returns the name FCM gave each
// message it accepted ("projects/<project>/messages/<id>"; "" for the
// others).
func (s *Sender) SendNamed(ctx context.Context, msgs []*messaging.Message) (names []string, errs []error) {
	rec := &answerRecord{}
	ctx = context.WithValue(ctx, answerRecordKey{}, rec)
	defer func() { rec.apply(errs) }()
	errs = make([]error, len(msgs))
	names = make([]string, len(msgs))
	if len(msgs) == 1 {
		name, err := s.client.Send(ctx, msgs[0])
		errs[0] = markUnsent(err)
		if err == nil {
			names[0] = name
		}
		return names, errs
	}
	for start := 0; start < len(msgs); start += sendEachMax {
		end := min(start+sendEachMax, len(msgs))
		br, err := s.client.SendEach(ctx, msgs[start:end])
		if err != nil {
			err = markUnsent(err)
			for i := start; i < end; i++ {
				errs[i] = err
			}
			continue
		}
		for i, r := range br.Responses {
			if !r.Success {
				errs[start+i] = markUnsent(r.Error)
			} else {
				names[start+i] = r.MessageID
			}
		}
	}
	return names, errs
}

// markUnsent wraps the errors of messages that firebase-admin-go refused to
// send (validation, encoding) with errInvalidMessage, and returns all others
// (FCM's answers, transport and context errors) as they are. The one other
// plain error the SDK returns, for a 2xx answer whose body is not JSON (an
// endpoint that is not FCM), lands here too: not retried, logged loudly.
func markUnsent(err error) error {
	if err == nil || firebaseError(err) != nil ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", errInvalidMessage, err)
}

// UnavailableError is the error of a message whose send was cut off by the
// context's deadline while firebase-admin-go waited to retry a 503 answer
// (see [Sender.Send]). It wraps the context error.
type UnavailableError struct {
	// RetryAfter is what was left of FCM's Retry-After when the send
	// returned (0 when it named none or it had passed).
	RetryAfter time.Duration
	err        error
}

// Error names the lost answer and the context error.
func (e *UnavailableError) Error() string {
	return "FCM answered 503 UNAVAILABLE, then the send's deadline ended the client's wait to retry: " + e.err.Error()
}

// Unwrap returns the context error.
func (e *UnavailableError) Unwrap() error { return e.err }

// answerRecordKey is the context key of a send's *answerRecord.
type answerRecordKey struct{}

// answerRecord keeps, for one call of [Sender.Send], the latest end of
// Retry-After among FCM's 503 answers. Safe for concurrent use (SendEach
// sends in parallel).
type answerRecord struct {
	mu    sync.Mutex
	seen  bool
	until time.Time
}

// note records a 503 answer received at now with Retry-After after.
func (r *answerRecord) note(now time.Time, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = true
	if u := now.Add(after); u.After(r.until) {
		r.until = u
	}
}

// apply replaces, in errs, the bare deadline errors by [*UnavailableError]s
// when a 503 was recorded.
func (r *answerRecord) apply(errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.seen {
		return
	}
	left := max(time.Until(r.until), 0)
	for i, err := range errs {
		if errors.Is(err, context.DeadlineExceeded) && firebaseError(err) == nil {
			errs[i] = &UnavailableError{RetryAfter: left, err: err}
		}
	}
}

// answerRecorder is the HTTP transport under the SDK's: it notes each 503
// answer, with its Retry-After, in the request's *answerRecord.
type answerRecorder struct {
	next http.RoundTripper
}

// RoundTrip sends req with the next transport and notes a 503 answer.
func (a answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
		if rec, ok := req.Context().Value(answerRecordKey{}).(*answerRecord); ok {
			now := time.Now()
			rec.note(now, parseRetryAfter(resp.Header.Get("Retry-After"), now))
		}
	}
	return resp, err
}

// defaultTransport is the transport of FCM requests when the configuration
// names none: Go's default, keeping up to 100 idle connections to FCM (as
// Google's own client libraries do) instead of 2, and checking idle HTTP/2
// connections with a ping after 31 s.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 31 * time.Second}
	return t
}
