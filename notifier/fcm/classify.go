package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
)

// Outcome is what became of one push: sent, or why not. Its values are
// stable strings, fit for metric labels and logs.
type Outcome string

// The outcomes of a push, after FCM's error codes
// (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
const (
	// OutcomeSent: FCM accepted the message.
	OutcomeSent Outcome = "sent"
	// OutcomeUnregistered: FCM UNREGISTERED (404), the token is dead (app
	// uninstalled, token expired or rotated).
	OutcomeUnregistered Outcome = "unregistered"
	// OutcomeInvalidToken: FCM INVALID_ARGUMENT (400) about the registration
	// token itself.
	OutcomeInvalidToken Outcome = "invalid_token"
	// OutcomeInvalidMessage: FCM INVALID_ARGUMENT (400) about anything else
	// in the message, or a message the SDK refused to send: our bug.
	OutcomeInvalidMessage Outcome = "invalid_message"
	// OutcomeSenderIDMismatch: FCM SENDER_ID_MISMATCH (403), the token
	// belongs to another Firebase project (or our credentials are wrong).
	OutcomeSenderIDMismatch Outcome = "sender_id_mismatch"
	// OutcomeThirdPartyAuth: FCM THIRD_PARTY_AUTH_ERROR (401), the APNs or
	// web-push credentials in the Firebase project are wrong.
	OutcomeThirdPartyAuth Outcome = "third_party_auth_error"
	// OutcomeQuota: FCM QUOTA_EXCEEDED, or any 429 RESOURCE_EXHAUSTED.
	OutcomeQuota Outcome = "quota_exceeded"
	// OutcomeUnavailable: FCM UNAVAILABLE (503), FCM is overloaded; also a
	// send whose deadline ended while the client waited to retry a 503
	// ([UnavailableError]).
	OutcomeUnavailable Outcome = "unavailable"
	// OutcomeInternal: FCM INTERNAL (500).
	OutcomeInternal Outcome = "internal"
	// OutcomeUnknown: FCM UNSPECIFIED_ERROR, or an error this package does
	// not recognise (including answers without an FCM error code, such as a
	// 401 for our own credentials or a 404 from a wrong endpoint).
	OutcomeUnknown Outcome = "unknown"
	// OutcomeTransport: no answer from FCM: connection refused or reset,
	// timeout, the context's deadline or cancellation.
	OutcomeTransport Outcome = "transport"
)

// Retryable reports whether sending the same message again later may
// succeed: true for quota, unavailable, internal, unknown and transport.
func (o Outcome) Retryable() bool {
	switch o {
	case OutcomeQuota, OutcomeUnavailable, OutcomeInternal, OutcomeUnknown, OutcomeTransport:
		return true
	}
	return false
}

// DropsToken reports whether the token should be deleted from the registry:
// true for unregistered, invalid_token and sender_id_mismatch. (A burst of
// sender_id_mismatch means our credentials are wrong, not the tokens: the
// caller should stop deleting past a threshold.)
func (o Outcome) DropsToken() bool {
	switch o {
	case OutcomeUnregistered, OutcomeInvalidToken, OutcomeSenderIDMismatch:
		return true
	}
	return false
}

// errInvalidMessage marks errors of messages that were never sent because
// firebase-admin-go refused them (see [Sender.Send]).
var errInvalidMessage = errors.New("message not sent: rejected by the FCM client")

// Classify returns the outcome of one send, given the error the sender
// returned for it (nil: [OutcomeSent]). It recognises firebase-admin-go's
// errors also when wrapped (with %w or errors.Join).
//
// FCM's own error code (details[].errorCode, read with the SDK's
// messaging.IsUnregistered & co.) decides first; an answer without one is
// classified by its canonical status (a project-wide 429 carries no FCM
// code, nor do some 503s). For INVALID_ARGUMENT, [isInvalidTokenError] tells
// a bad token from a bad message. SDK errors without an HTTP answer, context
// errors and net.Errors are [OutcomeTransport]; anything else is
// [OutcomeUnknown].
func Classify(err error) Outcome {
	if err == nil {
		return OutcomeSent
	}
	fe := firebaseError(err)
	if fe == nil {
		var netErr net.Error
		var unavailable *UnavailableError
		switch {
		case errors.As(err, &unavailable):
			return OutcomeUnavailable
		case errors.Is(err, errInvalidMessage):
			return OutcomeInvalidMessage
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.As(err, &netErr):
			return OutcomeTransport
		}
		return OutcomeUnknown
	}
	if o, ok := firstMatch(fcmCodes, fe); ok {
		return o
	}
	switch {
	case messaging.IsInvalidArgument(fe):
		return invalidArgumentOutcome(fe)
	case errorutils.HTTPResponse(fe) == nil:
		// The SDK's transport errors carry no response (DEADLINE_EXCEEDED,
		// UNAVAILABLE for a refused connection, UNKNOWN otherwise).
		return OutcomeTransport
	}
	body, _ := readErrorBody(fe)
	switch {
	case body.fcmErrorCode() != "":
		// UNSPECIFIED_ERROR, or a code newer than this SDK knows.
		return OutcomeUnknown
	case errorutils.IsInvalidArgument(fe):
		return invalidArgumentOutcome(fe)
	}
	if o, ok := firstMatch(platformCodes, fe); ok {
		return o
	}
	return OutcomeUnknown
}

// match pairs a predicate of firebase-admin-go's on an error with the
// outcome it means.
type match struct {
	is      func(error) bool
	outcome Outcome
}

// fcmCodes are FCM's own error codes (the errorCode of the answer's
// details) that decide an outcome by themselves, in the order Classify
// tries them. INVALID_ARGUMENT is not here: it needs the answer's text.
var fcmCodes = []match{
	{messaging.IsUnregistered, OutcomeUnregistered},
	{messaging.IsSenderIDMismatch, OutcomeSenderIDMismatch},
	{messaging.IsThirdPartyAuthError, OutcomeThirdPartyAuth},
	{messaging.IsQuotaExceeded, OutcomeQuota},
	{messaging.IsUnavailable, OutcomeUnavailable},
	{messaging.IsInternal, OutcomeInternal},
}

// platformCodes are the Google API platform's status codes that decide an
// outcome when the answer names no FCM code.
var platformCodes = []match{
	{errorutils.IsResourceExhausted, OutcomeQuota},
	{errorutils.IsUnavailable, OutcomeUnavailable},
	{errorutils.IsInternal, OutcomeInternal},
}

// firstMatch returns the outcome of the first of ms that err matches.
func firstMatch(ms []match, err error) (Outcome, bool) {
	for _, m := range ms {
		if m.is(err) {
			return m.outcome, true
		}
	}
	return "", false
}

func invalidArgumentOutcome(err error) Outcome {
	if isInvalidTokenError(err) {
		return OutcomeInvalidToken
	}
	return OutcomeInvalidMessage
}

// isInvalidTokenError reports whether err is FCM's INVALID_ARGUMENT answer
// about the registration token itself, not about the rest of the message
// (both share the status and FCM error code).
//
// It prefers the structure of the answer: if the body has any
// google.rpc.BadRequest field violation, the answer is about the token
// exactly when one of them names the field "message.token". Only without
// field violations does it fall back to the documented message text, "The
// registration token is not a valid FCM registration token" (which is how
// FCM answers today, see fcmtest.InvalidTokenMessageOnly).
func isInvalidTokenError(err error) bool {
	fe := firebaseError(err)
	if fe == nil || !(messaging.IsInvalidArgument(fe) || errorutils.IsInvalidArgument(fe)) {
		return false
	}
	body, ok := readErrorBody(fe)
	return ok && body.blamesToken()
}

// invalidTokenText is the part of FCM's invalid-token message that
// [isInvalidTokenError] falls back to.
const invalidTokenText = "registration token is not a valid FCM registration token"

// blamesToken is the decision of [isInvalidTokenError] on a decoded body.
func (b errorBody) blamesToken() bool {
	if fields := b.violatedFields(); len(fields) > 0 {
		return slices.Contains(fields, "message.token")
	}
	return strings.Contains(b.Error.Message, invalidTokenText)
}

// RetryAfter returns how long FCM asked the client to wait before trying
// again, from the Retry-After header (delta-seconds, or an HTTP date taken
// relative to now) of the answer behind err. It returns 0 when err carries
// no HTTP answer, the header is absent or malformed, or the date has passed.
//
// firebase-admin-go exposes the header only this way, through
// errorutils.HTTPResponse; it honours it itself only for 503, retrying
// internally. For an [*UnavailableError] (a 503 whose retry the deadline cut
// off) it is what was left of that answer's Retry-After when the send
// returned.
func RetryAfter(err error, now time.Time) time.Duration {
	if unavailable, ok := errors.AsType[*UnavailableError](err); ok {
		return min(unavailable.RetryAfter, maxRetryAfter)
	}
	fe := firebaseError(err)
	if fe == nil {
		return 0
	}
	resp := errorutils.HTTPResponse(fe)
	if resp == nil {
		return 0
	}
	return parseRetryAfter(resp.Header.Get("Retry-After"), now)
}

// parseRetryAfter is [RetryAfter] on the header's value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

// maxRetryAfter caps what [RetryAfter] returns, so that a nonsensical header
// cannot overflow a Duration or park a task for years.
const maxRetryAfter = 24 * time.Hour

// firebaseError returns the firebase-admin-go error in err's chain (err
// itself, usually), or nil. The SDK's error type is internal, and its checks
// (messaging.IsUnregistered, errorutils.HTTPResponse, ...) look at the error
// itself, not at what it wraps; so this walks the chain and picks the first
// link the SDK recognises: one with an HTTP answer, or one of the transport
// errors (codes DEADLINE_EXCEEDED, UNAVAILABLE, UNKNOWN, without an answer).
func firebaseError(err error) error {
	if err == nil {
		return nil
	}
	if errorutils.HTTPResponse(err) != nil || errorutils.IsDeadlineExceeded(err) ||
		errorutils.IsUnavailable(err) || errorutils.IsUnknown(err) {
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return firebaseError(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if fe := firebaseError(e); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// errorBody is the part of a Google API error body this package reads.
type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

const (
	typeFCMError   = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	typeBadRequest = "type.googleapis.com/google.rpc.BadRequest"
)

// fcmErrorCode is the errorCode of the body's FcmError detail, or "".
func (b errorBody) fcmErrorCode() string {
	for _, d := range b.Error.Details {
		if d.Type == typeFCMError {
			return d.ErrorCode
		}
	}
	return ""
}

// violatedFields lists the fields of the body's google.rpc.BadRequest
// details.
func (b errorBody) violatedFields() []string {
	var fields []string
	for _, d := range b.Error.Details {
		if d.Type == typeBadRequest {
			for _, v := range d.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
	}
	return fields
}

// readErrorBody decodes the body of the HTTP answer behind fe; ok is false
// when there is none or it is not JSON.
//
// errorutils.HTTPResponse returns the same buffered *http.Response on every
// call, so reading its Body would leave it empty for the next reader (a log
// line, another Classify). This puts an unread copy back; like any reader of
// that Body, it must not run concurrently with another one on the same error.
func readErrorBody(fe error) (b errorBody, ok bool) {
	resp := errorutils.HTTPResponse(fe)
	if resp == nil || resp.Body == nil {
		return b, false
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	if err != nil {
		return b, false
	}
	return b, json.Unmarshal(raw, &b) == nil
}
