package devices_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/devices"
)

func ExampleNewRegistry() {
	mr, err := miniredis.Run() // any Redis will do; miniredis keeps the example self-contained
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	reg := devices.NewRegistry(rdb, devices.Options{
		MaxDevicesPerUser: 5,
		Now:               func() time.Time { return now },
	})
	ctx := context.Background()

	if err := reg.Register(ctx, "alice", "fcm-token-1", devices.Registration{Platform: "android", Locale: "en-US"}); err != nil {
		log.Fatal(err)
	}
	now = now.Add(time.Minute)
	if err := reg.Register(ctx, "alice", "fcm-token-2", devices.Registration{Platform: "ios"}); err != nil {
		log.Fatal(err)
	}
	// The same token registered for bob moves to him.
	if err := reg.Register(ctx, "bob", "fcm-token-1", devices.Registration{}); err != nil {
		log.Fatal(err)
	}

	for _, user := range []string{"alice", "bob"} {
		list, err := reg.List(ctx, user)
		if err != nil {
			log.Fatal(err)
		}
		for _, d := range list {
			fmt.Println(user, d.Token, d.Platform, d.UpdatedAt.Format(time.RFC3339))
		}
	}
	owners, err := reg.Owners(ctx, []string{"fcm-token-1", "fcm-token-2", "unknown"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(owners)
	// Output:
	// alice fcm-token-2 ios 2025-01-02T03:05:05Z
	// bob fcm-token-1  2025-01-02T03:05:05Z
	// map[fcm-token-1:bob fcm-token-2:alice]
}

func ExampleValidateToken() {
	for _, tok := range []string{"dGVzdA:APA91bH", "has space", "a/b"} {
		fmt.Println(devices.ValidateToken(tok))
	}
	// Output:
	// <nil>
	// invalid device token: byte 3 is not printable ASCII
	// invalid device token: byte 1 is '/'
}
