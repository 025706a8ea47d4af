package notifier

import (
	"strconv"

	"firebase.google.com/go/v4/messaging"

	"github.com/followpush/followpush/tasks"
)

// Content is the visible text of a push.
type Content struct {
	Title, Body string
}

// DefaultContent is the English text of f's push: title [DefaultTitle]
// ("New follower") and body "<From> started following you", the same text
// the default [Templates] render.
func DefaultContent(f tasks.Follow) Content {
	return Content{Title: DefaultTitle, Body: f.From + " started following you"}
}

// Device platforms as the device registry stores them. Any other value,
// including "", means "not known".
const (
	PlatformAndroid = "android"
	PlatformIOS     = "ios"
	PlatformWeb     = "web"
)

// Keys and fixed values of a follow push's data payload. FCM reserves "from"
// (and keys starting with "google" or "gcm"), hence "from_account".
const (
	DataType        = "type"
	DataFromAccount = "from_account"
	DataToAccount   = "to_account"
	DataEventTime   = "event_time"
	DataFollowID    = "follow_id"

	DataTypeFollow = "follow"
)

// apnsThreadID groups follow notifications together in iOS's notification
// center.
const apnsThreadID = "follow"

// CollapseID is the device-side collapse identity of f's push: "follow-"
// followed by the first 24 hex digits (96 bits) of [tasks.Follow.ID], 31
// bytes in all. It is the same for every send of the same follow, so a
// repeated send (after an FCM 503 that had in fact delivered, say) replaces
// the notification on the device instead of adding a second one, and it
// differs between follows. It fits every platform's limit: APNs
// apns-collapse-id (64 bytes), Web Push Topic (32 URL-safe base64
// characters), Android notification tag.
func CollapseID(f tasks.Follow) string {
	return "follow-" + f.ID()[:24]
}

// BuildMessage returns the FCM message that tells the device with the given
// registration token that f.From followed f.To, showing c.
//
// Every message carries a notification (c's title and body) and the data
// payload {"type":"follow", "from_account", "to_account", "event_time"
// (milliseconds since the epoch, decimal), "follow_id" ([tasks.Follow.ID])}.
// The platform-specific part is chosen by platform ([PlatformAndroid],
// [PlatformIOS], [PlatformWeb]); for an unknown platform all three are set
// and FCM uses the one that applies:
//
//   - Android: high priority, notification tag [CollapseID] (not
//     collapse_key: collapsible messages are throttled by FCM);
//   - APNs: headers apns-collapse-id [CollapseID], apns-priority 10
//     (immediate) and apns-push-type alert; aps thread-id "follow" and the
//     default sound;
//   - Web Push: headers Topic [CollapseID] (a newer message with the same
//     topic replaces an undelivered one) and Urgency high; notification tag
//     [CollapseID] (replaces a shown one).
//
// No TTL is set: FCM keeps an undeliverable message for its default four
// weeks.
func BuildMessage(f tasks.Follow, token, platform string, c Content) *messaging.Message {
	collapse := CollapseID(f)
	m := &messaging.Message{
		Token:        token,
		Notification: &messaging.Notification{Title: c.Title, Body: c.Body},
		Data: map[string]string{
			DataType:        DataTypeFollow,
			DataFromAccount: f.From,
			DataToAccount:   f.To,
			DataEventTime:   strconv.FormatInt(f.EventTime, 10),
			DataFollowID:    f.ID(),
		},
	}
	known := platform == PlatformAndroid || platform == PlatformIOS || platform == PlatformWeb
	if platform == PlatformAndroid || !known {
		m.Android = &messaging.AndroidConfig{
			Priority:     "high",
			Notification: &messaging.AndroidNotification{Tag: collapse},
		}
	}
	if platform == PlatformIOS || !known {
		m.APNS = &messaging.APNSConfig{
			Headers: map[string]string{
				"apns-collapse-id": collapse,
				"apns-priority":    "10",
				"apns-push-type":   "alert",
			},
			Payload: &messaging.APNSPayload{
				Aps: &messaging.Aps{ThreadID: apnsThreadID, Sound: "default"},
			},
		}
	}
	if platform == PlatformWeb || !known {
		m.Webpush = &messaging.WebpushConfig{
			Headers:      map[string]string{"Topic": collapse, "Urgency": "high"},
			Notification: &messaging.WebpushNotification{Tag: collapse},
		}
	}
	return m
}
