package fcmtest

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Type URLs of the error details FCM puts in error.details.
const (
	TypeFCMError   = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	TypeBadRequest = "type.googleapis.com/google.rpc.BadRequest"
	TypeErrorInfo  = "type.googleapis.com/google.rpc.ErrorInfo"
	TypeHelp       = "type.googleapis.com/google.rpc.Help"
)

// Detail is one entry of error.details. Which fields are set depends on Type;
// empty fields are left out of the JSON.
type Detail struct {
	// Type is the detail's protobuf type URL (TypeFCMError, TypeBadRequest, ...).
	Type string `json:"@type"`
	// ErrorCode is FCM's error code (TypeFCMError), e.g. "UNREGISTERED".
	ErrorCode string `json:"errorCode,omitempty"`
	// FieldViolations name the offending request fields (TypeBadRequest).
	FieldViolations []FieldViolation `json:"fieldViolations,omitempty"`
	// Reason, Domain and Metadata describe the cause (TypeErrorInfo).
	Reason string `json:"reason,omitempty"`
	// Domain is the service that gave Reason, e.g. "googleapis.com".
	Domain string `json:"domain,omitempty"`
	// Metadata holds the cause's details, as key and value.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Links point at documentation (TypeHelp).
	Links []Link `json:"links,omitempty"`
}

// FieldViolation is one entry of a google.rpc.BadRequest detail.
type FieldViolation struct {
	// Field is the request field's path, e.g. "message.token".
	Field string `json:"field"`
	// Description says what is wrong with it.
	Description string `json:"description"`
}

// Link is one entry of a google.rpc.Help detail.
type Link struct {
	// Description is the link's text.
	Description string `json:"description"`
	// URL is where it points.
	URL string `json:"url"`
}

// FCMErrorDetail is a google.firebase.fcm.v1.FcmError detail with the given
// FCM error code, the field firebase-admin-go's IsUnregistered & co. read.
func FCMErrorDetail(errorCode string) Detail {
	return Detail{Type: TypeFCMError, ErrorCode: errorCode}
}

// BadRequestDetail is a google.rpc.BadRequest detail with one field violation.
func BadRequestDetail(field, description string) Detail {
	return Detail{Type: TypeBadRequest, FieldViolations: []FieldViolation{{Field: field, Description: description}}}
}

// ErrorResponse is a Google API error answer: HTTP status httpStatus and the
// body {"error":{"code":httpStatus,"message":message,"status":status,
// "details":[...]}} (details left out when there are none), indented the way
// Google's servers indent it.
func ErrorResponse(httpStatus int, status, message string, details ...Detail) Response {
	type apiError struct {
		Code    int      `json:"code"`
		Message string   `json:"message"`
		Status  string   `json:"status"`
		Details []Detail `json:"details,omitempty"`
	}
	body, err := json.MarshalIndent(struct {
		Error apiError `json:"error"`
	}{apiError{httpStatus, message, status, details}}, "", "  ")
	if err != nil {
		panic("fcmtest: encode error body: " + err.Error()) // cannot happen: plain strings and ints
	}
	return Response{Status: httpStatus, Header: http.Header{}, Body: append(body, '\n')}
}

// withRetryAfter sets Retry-After to d in whole seconds, rounded up (FCM
// sends delta-seconds). A negative d is sent as 0.
func withRetryAfter(r Response, d time.Duration) Response {
	secs := int64(math.Ceil(max(d, 0).Seconds()))
	r.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
	return r
}

// The canned answers below are FCM's real error bodies where public reports
// show them (the sources are named); the rest follow the documented status
// and error code with a message in Google's style.

// Unregistered is FCM's answer for a token that is no longer valid (app
// uninstalled, token expired or rotated): 404 NOT_FOUND, errorCode
// UNREGISTERED.
func Unregistered() Response {
	return ErrorResponse(http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.",
		FCMErrorDetail("UNREGISTERED"))
}

// MessageInvalidToken is the message FCM sends with an invalid registration
// token (firebase/firebase-admin-java#1064, 2025).
const MessageInvalidToken = "The registration token is not a valid FCM registration token"

// InvalidToken is FCM's answer for a malformed registration token: 400
// INVALID_ARGUMENT, errorCode INVALID_ARGUMENT, the documented message, and
// a google.rpc.BadRequest violation on message.token. FCM has sent both
// parts, though not always together: see [InvalidTokenMessageOnly] and
// [InvalidTokenViolationOnly].
func InvalidToken() Response {
	return ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT", MessageInvalidToken,
		FCMErrorDetail("INVALID_ARGUMENT"),
		BadRequestDetail("message.token", "Invalid registration token"))
}

// InvalidTokenMessageOnly is the invalid-token answer as FCM sends it today
// (firebase/firebase-admin-java#1064): the documented message and an
// INVALID_ARGUMENT errorCode, no field violation.
func InvalidTokenMessageOnly() Response {
	return ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT", MessageInvalidToken,
		FCMErrorDetail("INVALID_ARGUMENT"))
}

// InvalidTokenViolationOnly is the invalid-token answer as FCM sent it in
// 2018 (firebase/firebase-admin-python#187): a generic message, and the token
// named only by the google.rpc.BadRequest field violation.
func InvalidTokenViolationOnly() Response {
	return ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT", "Request contains an invalid argument.",
		FCMErrorDetail("INVALID_ARGUMENT"),
		BadRequestDetail("message.token", "Invalid registration token"))
}

// InvalidMessage is FCM's answer for a message it cannot parse, here a
// non-string data value (esl/MongoosePush#123): 400 INVALID_ARGUMENT with a
// google.rpc.BadRequest violation on the data field and, as FCM sends it, no
// FcmError detail at all.
func InvalidMessage() Response {
	msg := "Invalid value at 'message.data[0].value' (TYPE_STRING), 123"
	return ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT", msg,
		BadRequestDetail("message.data[0].value", msg))
}

// SenderIDMismatch is FCM's answer for a token that belongs to another
// Firebase project (dcai/airnotifier#211): 403 PERMISSION_DENIED, errorCode
// SENDER_ID_MISMATCH.
func SenderIDMismatch() Response {
	return ErrorResponse(http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch",
		FCMErrorDetail("SENDER_ID_MISMATCH"))
}

// QuotaExceeded is FCM's answer when a per-device or per-topic message rate
// is exceeded: 429 RESOURCE_EXHAUSTED, errorCode QUOTA_EXCEEDED, and a
// Retry-After header of retryAfter in whole seconds.
func QuotaExceeded(retryAfter time.Duration) Response {
	return withRetryAfter(ErrorResponse(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED",
		"Device message rate exceeded.", FCMErrorDetail("QUOTA_EXCEEDED")), retryAfter)
}

// ProjectQuotaExceeded is the answer when the project's send quota (600,000
// per minute) is exhausted, copied from firebase/firebase-admin-go#719: 429
// RESOURCE_EXHAUSTED with a google.rpc.ErrorInfo RATE_LIMIT_EXCEEDED and NO
// FcmError detail, so firebase-admin-go's IsQuotaExceeded reports false for
// it. Retry-After is retryAfter in whole seconds.
func ProjectQuotaExceeded(retryAfter time.Duration) Response {
	return withRetryAfter(ErrorResponse(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED",
		"Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of service 'fcm.googleapis.com' for consumer 'project_number:000000000000'.",
		Detail{
			Type:   TypeErrorInfo,
			Reason: "RATE_LIMIT_EXCEEDED",
			Domain: "googleapis.com",
			Metadata: map[string]string{
				"consumer":          "projects/000000000000",
				"quota_limit":       "SendsPerMinutePerProject",
				"quota_limit_value": "600000",
				"quota_location":    "global",
				"quota_metric":      "fcm.googleapis.com/send_requests",
				"quota_unit":        "1/min/{project}",
				"service":           "fcm.googleapis.com",
			},
		},
		Detail{Type: TypeHelp, Links: []Link{{
			Description: "Request a higher quota limit.",
			URL:         "https://cloud.google.com/docs/quotas/help/request_increase",
		}}},
	), retryAfter)
}

// Unavailable is FCM's answer when it is overloaded: 503 UNAVAILABLE,
// errorCode UNAVAILABLE, and a Retry-After header of retryAfter in whole
// seconds.
//
// firebase-admin-go retries a 503 itself, up to 4 times, waiting
// max(Retry-After, 0/1/2/4 s) between attempts, unless Retry-After is over 2
// minutes: then it gives up at once.
func Unavailable(retryAfter time.Duration) Response {
	return withRetryAfter(ErrorResponse(http.StatusServiceUnavailable, "UNAVAILABLE",
		"The service is currently unavailable.", FCMErrorDetail("UNAVAILABLE")), retryAfter)
}

// Internal is FCM's answer for an internal error: 500 INTERNAL, errorCode
// INTERNAL.
func Internal() Response {
	return ErrorResponse(http.StatusInternalServerError, "INTERNAL", "Internal error encountered.",
		FCMErrorDetail("INTERNAL"))
}

// ThirdPartyAuth is FCM's answer when the APNs certificate or auth key, or
// the web-push key, of the Firebase project is wrong (Blackjacx/Assist#6):
// 401 UNAUTHENTICATED, errorCode THIRD_PARTY_AUTH_ERROR.
func ThirdPartyAuth() Response {
	return ErrorResponse(http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service",
		FCMErrorDetail("THIRD_PARTY_AUTH_ERROR"))
}

// Unspecified is FCM's answer when nothing more is known about an error:
// errorCode UNSPECIFIED_ERROR, here with 500 UNKNOWN.
func Unspecified() Response {
	return ErrorResponse(http.StatusInternalServerError, "UNKNOWN", "Unknown error.",
		FCMErrorDetail("UNSPECIFIED_ERROR"))
}

// Unauthenticated is Google's answer to a request without a valid OAuth2
// access token (the caller's own credentials, not APNs'): 401
// UNAUTHENTICATED with no FcmError detail.
func Unauthenticated() Response {
	return ErrorResponse(http.StatusUnauthorized, "UNAUTHENTICATED",
		"Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
}
