package webhook

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/followpush/followpush/devices"
)

// Tencent-shaped webhook answer.
type tencentAnswer struct {
	ActionStatus string `json:"ActionStatus"`
	ErrorCode    int    `json:"ErrorCode"`
	ErrorInfo    string `json:"ErrorInfo"`
}

// Webhook error codes (the ErrorCode of a FAIL answer). Tencent only needs
// them to be non-zero; they are stable so operators can grep for them.
const (
	codeBadRequest   = 4000
	codeUnauthorized = 4010
	codeUnknownApp   = 4030
	codeTooLarge     = 4130
	codeUnavailable  = 5030
)

// webhook results, used as the "result" metric label.
const (
	resultOK           = "ok"
	resultIgnored      = "ignored"
	resultSpooled      = "spooled"
	resultUnauthorized = "unauthorized"
	resultForbidden    = "forbidden"
	resultBadRequest   = "bad_request"
	resultTooLarge     = "too_large"
	resultUnavailable  = "unavailable"
)

// webhookFailure maps a webhook problem to its HTTP status, Tencent error
// code and metric result: the one place that does so.
func webhookFailure(err error) (status, code int, result string) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, errUnknownApp):
		return http.StatusForbidden, codeUnknownApp, resultForbidden
	case errors.Is(err, ErrMissingSign), errors.Is(err, ErrBadSign), errors.Is(err, ErrStaleRequest):
		return http.StatusUnauthorized, codeUnauthorized, resultUnauthorized
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, codeTooLarge, resultTooLarge
	case errors.Is(err, ErrMalformed), errors.Is(err, errUnreadableBody):
		return http.StatusBadRequest, codeBadRequest, resultBadRequest
	}
	return http.StatusServiceUnavailable, codeUnavailable, resultUnavailable
}

var (
	errUnknownApp     = errors.New("unknown SdkAppid")
	errUnreadableBody = errors.New("unreadable body")
)

func writeTencent(w http.ResponseWriter, status, code int, info string) {
	a := tencentAnswer{ActionStatus: "OK", ErrorCode: code, ErrorInfo: info}
	if code != 0 {
		a.ActionStatus = "FAIL"
	}
	writeJSON(w, status, a)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Error string `json:"error"`
}

// deviceStatus maps a device API error to its HTTP status: invalid input is
// 400, anything else means the store failed (503).
func deviceStatus(err error) int {
	switch {
	case errors.Is(err, devices.ErrInvalidToken), errors.Is(err, devices.ErrInvalidPlatform),
		errors.Is(err, devices.ErrInvalidUserID), errors.Is(err, devices.ErrInvalidLocale),
		errors.Is(err, errBadDeviceBody):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}
