package tencent

// Answer is the body every callback answer carries (all three fields are
// required): ActionStatus "OK" with ErrorCode 0 for success, "FAIL" with a
// non-zero ErrorCode for a failure.
type Answer struct {
	// ActionStatus is "OK" or "FAIL".
	ActionStatus string `json:"ActionStatus"`
	// ErrorCode is 0 for OK, followpush's code of the failure otherwise.
	ErrorCode int `json:"ErrorCode"`
	// ErrorInfo says what failed ("" for OK).
	ErrorInfo string `json:"ErrorInfo"`
}

// OK is the answer to a callback that was handled.
func OK() Answer { return Answer{ActionStatus: "OK"} }

// Fail is the answer to a callback that failed: code must not be 0
// (Tencent only needs it non-zero; followpush's codes are stable, for
// operators to grep for), info says why.
func Fail(code int, info string) Answer {
	return Answer{ActionStatus: "FAIL", ErrorCode: code, ErrorInfo: info}
}
