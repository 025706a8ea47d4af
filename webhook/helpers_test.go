package webhook_test

import (
	"sort"

	"github.com/google/go-cmp/cmp"
)

func cmpSortStrings() cmp.Option {
	return cmp.Transformer("sort", func(in []string) []string {
		out := append([]string(nil), in...)
		sort.Strings(out)
		return out
	})
}
