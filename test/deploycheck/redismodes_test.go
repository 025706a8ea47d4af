package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// variantBlock is one YAML block of deploy/README.md's "Redis Cluster /
// Sentinel" section: what to change in one manifest for one Redis mode.
type variantBlock struct {
	mode   string // "cluster", "sentinel"
	file   string // k8s/configmap.yaml, k8s/worker-scaledobject.yaml
	object string // the ConfigMap's name, for configmap.yaml
	body   string
}

// variantRE finds a block: a ```yaml fence whose first line is
// "# [mode] k8s/file.yaml [object]: what to do".
var variantRE = regexp.MustCompile("(?s)```yaml\n# \\[([a-z]+)\\] (k8s/[a-z.-]+\\.yaml)(?: ([a-z-]+))?:[^\n]*\n(.*?)```")

func readmeVariants(t *testing.T, readme []byte) map[string][]variantBlock {
	t.Helper()
	out := map[string][]variantBlock{}
	for _, m := range variantRE.FindAllSubmatch(readme, -1) {
		b := variantBlock{mode: string(m[1]), file: string(m[2]), object: string(m[3]), body: string(m[4])}
		out[b.mode] = append(out[b.mode], b)
	}
	return out
}

// editDocs decodes every document of a manifest, lets edit change them, and
// encodes them again.
func editDocs(b []byte, edit func(doc map[string]any) error) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if doc == nil {
			continue
		}
		if err := edit(doc); err != nil {
			return nil, err
		}
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, _ := m[k].(map[string]any)
		if next == nil {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return m
}

// applyVariant returns files with the blocks applied: in a ConfigMap,
// REDIS_URL is replaced by the block's keys; in the ScaledObject, the
// triggers by the block's.
func applyVariant(files map[string][]byte, blocks []variantBlock) (map[string][]byte, error) {
	out := maps.Clone(files)
	for _, b := range blocks {
		var body map[string]any
		if err := yaml.Unmarshal([]byte(b.body), &body); err != nil {
			return nil, fmt.Errorf("[%s] %s: %w", b.mode, b.file, err)
		}
		applied := false
		edited, err := editDocs(out[b.file], func(doc map[string]any) error {
			meta, _ := doc["metadata"].(map[string]any)
			switch {
			case doc["kind"] == "ConfigMap" && meta["name"] == b.object:
				data := dig(doc, "data")
				delete(data, "REDIS_URL")
				maps.Copy(data, body)
				applied = true
			case doc["kind"] == "ScaledObject":
				triggers, ok := body["triggers"]
				if !ok {
					return fmt.Errorf("[%s] %s: the block has no triggers", b.mode, b.file)
				}
				dig(doc, "spec")["triggers"] = triggers
				applied = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !applied {
			return nil, fmt.Errorf("[%s] %s %s: nothing to apply the block to", b.mode, b.file, b.object)
		}
		out[b.file] = edited
	}
	return out, nil
}

// withRedisPassword adds REDIS_PASSWORD to followpush-secrets and, through a
// secretKeyRef, to every Deployment's containers; trigger edits the
// ScaledObject's first trigger's metadata.
func withRedisPassword(t *testing.T, files map[string][]byte, trigger func(md map[string]any)) map[string][]byte {
	t.Helper()
	out := maps.Clone(files)
	edit := func(name string, f func(doc map[string]any)) {
		b, err := editDocs(out[name], func(doc map[string]any) error { f(doc); return nil })
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	edit("k8s/secret.example.yaml", func(doc map[string]any) {
		if dig(doc, "metadata")["name"] == "followpush-secrets" {
			dig(doc, "stringData")["REDIS_PASSWORD"] = "CHANGE-ME-redis-password"
		}
	})
	for _, name := range []string{"k8s/receiver-deployment.yaml", "k8s/worker-deployment.yaml"} {
		edit(name, func(doc map[string]any) {
			for _, c := range dig(doc, "spec", "template", "spec")["containers"].([]any) {
				c := c.(map[string]any)
				env, _ := c["env"].([]any)
				c["env"] = append(env, map[string]any{"name": "REDIS_PASSWORD", "valueFrom": map[string]any{
					"secretKeyRef": map[string]any{"name": "followpush-secrets", "key": "REDIS_PASSWORD"},
				}})
			}
		})
	}
	edit("k8s/worker-scaledobject.yaml", func(doc map[string]any) {
		triggers := dig(doc, "spec")["triggers"].([]any)
		trigger(dig(triggers[0].(map[string]any), "metadata"))
	})
	return out
}

// TestRedisModes applies deploy/README.md's Redis Cluster and Sentinel
// blocks to the manifests: the Kubernetes checks (KEDA trigger, env, the
// programs' config loaders) accept each, and reject it when the trigger
// and the worker's Redis disagree.
func TestRedisModes(t *testing.T) {
	t.Parallel()
	real := readDeployFiles(t)
	df := loadDockerfile(t)
	variants := readmeVariants(t, real["README.md"])
	for _, mode := range []string{"cluster", "sentinel"} {
		if n := len(variants[mode]); n != 2 {
			t.Fatalf("deploy/README.md has %d [%s] blocks, want 2 (ConfigMap and ScaledObject): %v", n, mode, variants)
		}
	}
	if len(variants) != 2 {
		t.Errorf("deploy/README.md has blocks for modes %v, want cluster and sentinel", slices.Sorted(maps.Keys(variants)))
	}

	tests := []struct {
		name, mode string
		edit       func(t *testing.T, files map[string][]byte) map[string][]byte
		want       string // "" = no error
	}{
		{"cluster as documented", "cluster", nil, ""},
		{"sentinel as documented", "sentinel", nil, ""},
		{"cluster with literal addresses", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return editTrigger(t, f, func(md map[string]any) {
				delete(md, "addressesFromEnv")
				md["addresses"] = "redis-cluster-2.redis-cluster-headless:6379, redis-cluster-0.redis-cluster-headless:6379,redis-cluster-1.redis-cluster-headless:6379"
			})
		}, ""},
		{"cluster with other addresses", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return editTrigger(t, f, func(md map[string]any) {
				delete(md, "addressesFromEnv")
				md["addresses"] = "redis-cluster-0.redis-cluster-headless:6379"
			})
		}, "trigger addresses \"redis-cluster-0.redis-cluster-headless:6379\", but the worker's REDIS_CLUSTER_ADDRS is"},
		{"cluster with a single-Redis trigger", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return setTriggerType(t, f, "redis")
		}, "trigger type redis, but the worker's Redis is in cluster mode: want type redis-cluster"},
		{"sentinel with a cluster trigger", "sentinel", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return setTriggerType(t, f, "redis-cluster")
		}, "trigger type redis-cluster, but the worker's Redis is in sentinel mode: want type redis-sentinel"},
		{"cluster reading the sentinels' addresses", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return editTrigger(t, f, func(md map[string]any) { md["addressesFromEnv"] = "REDIS_SENTINEL_ADDRS" })
		}, "trigger addressesFromEnv REDIS_SENTINEL_ADDRS, but the worker's addresses are in REDIS_CLUSTER_ADDRS"},
		{"cluster trigger with a database", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return editTrigger(t, f, func(md map[string]any) { md["databaseIndex"] = "1" })
		}, "databaseIndex 1: in cluster mode the worker uses database 0"},
		{"sentinel with another master", "sentinel", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return editTrigger(t, f, func(md map[string]any) {
				delete(md, "sentinelMasterFromEnv")
				md["sentinelMaster"] = "othermaster"
			})
		}, `sentinelMaster "othermaster", but the worker's REDIS_SENTINEL_MASTER is "mymaster"`},
		{"sentinel with the master literally", "sentinel", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return editTrigger(t, f, func(md map[string]any) {
				delete(md, "sentinelMasterFromEnv")
				md["sentinelMaster"] = "mymaster"
			})
		}, ""},
		{"cluster password without trigger auth", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return withRedisPassword(t, f, func(md map[string]any) {})
		}, "the worker authenticates with REDIS_PASSWORD but the redis-cluster trigger has neither passwordFromEnv"},
		{"cluster password with passwordFromEnv", "cluster", func(t *testing.T, f map[string][]byte) map[string][]byte {
			return withRedisPassword(t, f, func(md map[string]any) { md["passwordFromEnv"] = "REDIS_PASSWORD" })
		}, ""},
		{"sentinel address list not host:port", "sentinel", func(t *testing.T, f map[string][]byte) map[string][]byte {
			b := bytes.Replace(f["k8s/configmap.yaml"], []byte("redis-sentinel-2.redis-sentinel:26379"), []byte("redis-sentinel-2.redis-sentinel"), 1)
			out := maps.Clone(f)
			out["k8s/configmap.yaml"] = b
			return out
		}, `would exit 2 at start: REDIS_SENTINEL_ADDRS: "redis-sentinel-2.redis-sentinel" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files, err := applyVariant(real, variants[tt.mode])
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				files = tt.edit(t, files)
			}
			errs := checkKubernetes(files, df)
			if tt.want == "" {
				report(t, errs)
				return
			}
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tt.want) }) {
				t.Errorf("want an error containing %q, got:\n%v", tt.want, errors.Join(errs...))
			}
		})
	}
}

// editTrigger edits the metadata of the ScaledObject's first trigger.
func editTrigger(t *testing.T, files map[string][]byte, edit func(md map[string]any)) map[string][]byte {
	t.Helper()
	out := maps.Clone(files)
	b, err := editDocs(out["k8s/worker-scaledobject.yaml"], func(doc map[string]any) error {
		triggers := dig(doc, "spec")["triggers"].([]any)
		edit(dig(triggers[0].(map[string]any), "metadata"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out["k8s/worker-scaledobject.yaml"] = b
	return out
}

// setTriggerType sets the type of the ScaledObject's first trigger.
func setTriggerType(t *testing.T, files map[string][]byte, typ string) map[string][]byte {
	t.Helper()
	out := maps.Clone(files)
	b, err := editDocs(out["k8s/worker-scaledobject.yaml"], func(doc map[string]any) error {
		triggers := dig(doc, "spec")["triggers"].([]any)
		triggers[0].(map[string]any)["type"] = typ
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out["k8s/worker-scaledobject.yaml"] = b
	return out
}
