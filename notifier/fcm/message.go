package fcm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"firebase.google.com/go/v4/messaging"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
)

// Keys and fixed values of a follow push's data payload. FCM reserves "from"
// (and keys starting with "google" or "gcm"), hence "from_account".
const (
	DataType        = "type"
	DataFromAccount = "from_account"
	DataToAccount   = "to_account"
	DataEventTime   = "event_time"
	DataFollowID    = "follow_id"
	// Summary pushes only: how many followers it sums up, the first of them
	// (a JSON array of at most [SummaryListMax] UserIDs) and the digest's id.
	DataCount        = "count"
	DataFromAccounts = "from_accounts"
	DataSummaryID    = "digest_id"

	DataTypeFollow = "follow"
)

// SummaryListMax bounds the followers a summary push lists in its data
// (from_accounts): at 32 bytes a UserID, 10 keep the message far below
// FCM's 4096-byte payload limit.
const SummaryListMax = 10

// Defaults of [MessageOptions].
const (
	// DefaultAndroidPriority is MessageOptions.AndroidPriority's default.
	DefaultAndroidPriority = "high"
	// DefaultAPNsSound is MessageOptions.APNsSound's default: the system's
	// sound.
	DefaultAPNsSound = "default"
	// DefaultAPNsThreadID groups follow notifications together in iOS's
	// notification center.
	DefaultAPNsThreadID = "follow"
)

// MessageOptions are the per-platform settings of every push. The zero
// value gives the defaults of each field.
type MessageOptions struct {
	// AndroidChannelID is the Android notification channel (Android 8+);
	// default "": the app's default channel (FCM's fallback channel when the
	// app declares none).
	AndroidChannelID string
	// AndroidPriority is the FCM Android message priority, "high" (default)
	// or "normal".
	AndroidPriority string
	// APNsSound is the aps sound: a sound file name in the app bundle,
	// "default" (the default) or "none" for a silent alert.
	APNsSound string
	// APNsThreadID groups follow notifications in iOS's notification center
	// (default "follow").
	APNsThreadID string
	// WebpushLink is the https URL a web notification opens when clicked
	// (webpush.fcm_options.link); default "": none.
	WebpushLink string
}

func (o MessageOptions) withDefaults() MessageOptions {
	if o.AndroidPriority == "" {
		o.AndroidPriority = DefaultAndroidPriority
	}
	if o.APNsSound == "" {
		o.APNsSound = DefaultAPNsSound
	}
	if o.APNsSound == "none" {
		o.APNsSound = ""
	}
	if o.APNsThreadID == "" {
		o.APNsThreadID = DefaultAPNsThreadID
	}
	return o
}

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
// The platform-specific part is chosen by platform ([devices.PlatformAndroid],
// [devices.PlatformIOS], [devices.PlatformWeb]); for an unknown platform all three are set
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
func BuildMessage(f tasks.Follow, token, platform string, c pushtext.Content) *messaging.Message {
	return MessageOptions{}.FollowMessage(f, token, platform, c)
}

// FollowMessage is [BuildMessage] with o's per-platform settings: Android
// channel and priority, APNs sound and thread-id, web-push link.
func (o MessageOptions) FollowMessage(f tasks.Follow, token, platform string, c pushtext.Content) *messaging.Message {
	return o.build(token, platform, c, CollapseID(f), map[string]string{
		DataType:        DataTypeFollow,
		DataFromAccount: f.From,
		DataToAccount:   f.To,
		DataEventTime:   strconv.FormatInt(f.EventTime, 10),
		DataFollowID:    f.ID(),
	})
}

// Summary is a summary push's substance: who was followed, by whom (oldest
// follow first), and the digest that sends it.
type Summary struct {
	tasks.Summary
	// Followers are the followers' UserIDs, oldest follow first; at least one.
	Followers []string
	// Latest is the EventTime (ms) of the newest follow summed up.
	Latest int64
}

// SummaryCollapseID is the device-side collapse identity of every summary
// push to the followee to: "followers-" followed by 22 hex digits of a
// hash of to, 32 bytes in all. It is the same for every summary to the
// same user, so a newer summary replaces the older one on the device.
func SummaryCollapseID(to string) string {
	sum := sha256.Sum256([]byte("followers\x00" + to))
	return "followers-" + hex.EncodeToString(sum[:])[:22]
}

// SummaryMessage returns the FCM message of summary push d to the device
// with the given token, showing c. It is shaped like [BuildMessage]'s, with
// collapse identity [SummaryCollapseID] and the data payload {"type":
// "follow", "from_account" (the first follower), "to_account",
// "event_time" (the newest follow's), "count" (all followers summed up),
// "from_accounts" (a JSON array of the first [SummaryListMax] followers),
// "digest_id"}.
func (o MessageOptions) SummaryMessage(d Summary, token, platform string, c pushtext.Content) *messaging.Message {
	list := d.Followers[:min(len(d.Followers), SummaryListMax)]
	listJSON, _ := json.Marshal(list) // []string always encodes
	first := ""
	if len(d.Followers) > 0 {
		first = d.Followers[0]
	}
	return o.build(token, platform, c, SummaryCollapseID(d.To), map[string]string{
		DataType:         DataTypeFollow,
		DataFromAccount:  first,
		DataToAccount:    d.To,
		DataEventTime:    strconv.FormatInt(d.Latest, 10),
		DataCount:        strconv.Itoa(len(d.Followers)),
		DataFromAccounts: string(listJSON),
		DataSummaryID:    d.ID(),
	})
}

func (o MessageOptions) build(token, platform string, c pushtext.Content, collapse string, data map[string]string) *messaging.Message {
	o = o.withDefaults()
	m := &messaging.Message{
		Token:        token,
		Notification: &messaging.Notification{Title: c.Title, Body: c.Body},
		Data:         data,
	}
	known := platform == devices.PlatformAndroid || platform == devices.PlatformIOS || platform == devices.PlatformWeb
	if platform == devices.PlatformAndroid || !known {
		m.Android = &messaging.AndroidConfig{
			Priority:     o.AndroidPriority,
			Notification: &messaging.AndroidNotification{Tag: collapse, ChannelID: o.AndroidChannelID},
		}
	}
	if platform == devices.PlatformIOS || !known {
		m.APNS = &messaging.APNSConfig{
			Headers: map[string]string{
				"apns-collapse-id": collapse,
				"apns-priority":    "10",
				"apns-push-type":   "alert",
			},
			Payload: &messaging.APNSPayload{
				Aps: &messaging.Aps{ThreadID: o.APNsThreadID, Sound: o.APNsSound},
			},
		}
	}
	if platform == devices.PlatformWeb || !known {
		m.Webpush = &messaging.WebpushConfig{
			Headers:      map[string]string{"Topic": collapse, "Urgency": "high"},
			Notification: &messaging.WebpushNotification{Tag: collapse},
		}
		if o.WebpushLink != "" {
			m.Webpush.FCMOptions = &messaging.WebpushFCMOptions{Link: o.WebpushLink}
		}
	}
	return m
}
