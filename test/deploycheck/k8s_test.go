package deploycheck

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"gopkg.in/yaml.v3"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/webhook"
)

// object is one Kubernetes object (one YAML document under deploy/k8s/).
type object struct {
	file       string
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	node       *yaml.Node
}

func (o object) String() string { return fmt.Sprintf("k8s/%s %s/%s", o.file, o.Kind, o.Metadata.Name) }

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deployment struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int            `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               securityContext `yaml:"securityContext"`
	Containers                    []container     `yaml:"containers"`
	Volumes                       []volume        `yaml:"volumes"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"configMap"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	FSGroup                  *int64 `yaml:"fsGroup"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		Prefix       string   `yaml:"prefix"`
		ConfigMapRef *nameRef `yaml:"configMapRef"`
		SecretRef    *nameRef `yaml:"secretRef"`
	} `yaml:"envFrom"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

// volume returns the pod volume called name.
func (p podSpec) volume(name string) (volume, bool) {
	for _, v := range p.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return volume{}, false
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type nameRef struct {
	Name     string `yaml:"name"`
	Optional bool   `yaml:"optional"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// portOf resolves a port given by name or number against the container's
// ports; ok is false when the container declares no such port.
func (c container) portOf(v any) (int, bool) {
	if n, ok := portNumber(v); ok {
		for _, p := range c.Ports {
			if p.ContainerPort == n {
				return n, true
			}
		}
		return n, false
	}
	if s, ok := v.(string); ok {
		for _, p := range c.Ports {
			if p.Name == s {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

type configMap struct {
	Data map[string]string `yaml:"data"`
}

type secret struct {
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

func (s secret) has(key string) bool {
	_, a := s.Data[key]
	_, b := s.StringData[key]
	return a || b
}

// value returns the (example) value of key.
func (s secret) value(key string) (string, error) {
	if v, ok := s.StringData[key]; ok {
		return v, nil
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("no key %s", key)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	return string(b), err
}

// secretSample returns the envVar of a Secret key: its example value from
// secret.example.yaml stands in for the real one in the loader check.
func secretSample(set k8sSet, name, key string, optional bool) envVar {
	v := envVar{from: "Secret " + name}
	s, ok := set.secrets[name]
	switch {
	case ok && s.has(key):
		v.sample, v.sampleErr = s.value(key)
	case optional:
	default:
		v.sampleErr = fmt.Errorf("Secret %s has no key %s (not even in secret.example.yaml)", name, key)
	}
	return v
}

func (s secret) keys() []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

type service struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type scaleTarget struct {
	Kind string `yaml:"kind"`
	Name string `yaml:"name"`
}

type hpa struct {
	Spec struct {
		ScaleTargetRef scaleTarget `yaml:"scaleTargetRef"`
		MinReplicas    int         `yaml:"minReplicas"`
		MaxReplicas    int         `yaml:"maxReplicas"`
		Metrics        []struct {
			Type     string `yaml:"type"`
			Resource *struct {
				Name string `yaml:"name"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

type pdb struct {
	Spec struct {
		Selector       labelSelector `yaml:"selector"`
		MinAvailable   any           `yaml:"minAvailable"`
		MaxUnavailable any           `yaml:"maxUnavailable"`
	} `yaml:"spec"`
}

type scaledObject struct {
	Spec struct {
		ScaleTargetRef  scaleTarget `yaml:"scaleTargetRef"`
		MinReplicaCount int         `yaml:"minReplicaCount"`
		MaxReplicaCount int         `yaml:"maxReplicaCount"`
		Triggers        []struct {
			Type              string            `yaml:"type"`
			Metadata          map[string]string `yaml:"metadata"`
			AuthenticationRef *struct {
				Name string `yaml:"name"`
			} `yaml:"authenticationRef"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

type kustomization struct {
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name string `yaml:"name"`
	} `yaml:"images"`
}

// parseK8s decodes every document of every deploy/k8s/*.yaml file.
func parseK8s(files map[string][]byte) ([]object, error) {
	var objs []object
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if path.Dir(name) != "k8s" || !isYAML(name) {
			continue
		}
		docs, err := yamlDocs(files[name])
		if err != nil {
			return nil, fmt.Errorf("k8s/%s: %w", name, err)
		}
		for _, d := range docs {
			o := object{file: path.Base(name), node: d}
			if err := d.Decode(&o); err != nil {
				return nil, fmt.Errorf("k8s/%s: %w", name, err)
			}
			objs = append(objs, o)
		}
	}
	return objs, nil
}

// decodeAs decodes o into v, recording an error in errs on failure.
func decodeAs(o object, v any, errs *[]error) bool {
	if err := o.node.Decode(v); err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %v", o, err))
		return false
	}
	return true
}

// k8sSet is the decoded objects, by kind and name.
type k8sSet struct {
	configMaps  map[string]configMap
	secrets     map[string]secret
	deployments map[string]deployment
	where       map[string]object // "Kind/name" → object
}

// checkKubernetes checks the objects of deploy/k8s/ against each other,
// the image and the programs.
func checkKubernetes(files map[string][]byte, df dockerfile) []error {
	objs, err := parseK8s(files)
	if err != nil {
		return []error{err}
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	set := k8sSet{configMaps: map[string]configMap{}, secrets: map[string]secret{}, deployments: map[string]deployment{}, where: map[string]object{}}
	var kust *kustomization
	for _, o := range objs {
		if o.Kind == "" || o.APIVersion == "" {
			fail("k8s/%s: a document without apiVersion and kind", o.file)
			continue
		}
		if o.Kind == "Kustomization" {
			k := kustomization{}
			if decodeAs(o, &k, &errs) {
				kust = &k
			}
			continue
		}
		if o.Metadata.Name == "" {
			fail("%s: no metadata.name", o)
		}
		if o.Metadata.Namespace != "" {
			fail("%s: sets metadata.namespace %q; the manifests are namespace-agnostic (use kubectl -n or the kustomization)", o, o.Metadata.Namespace)
		}
		id := o.Kind + "/" + o.Metadata.Name
		if _, dup := set.where[id]; dup {
			fail("%s: defined twice", o)
		}
		set.where[id] = o
		switch o.Kind {
		case "ConfigMap":
			var cm configMap
			if decodeAs(o, &cm, &errs) {
				set.configMaps[o.Metadata.Name] = cm
			}
		case "Secret":
			var s secret
			if decodeAs(o, &s, &errs) {
				set.secrets[o.Metadata.Name] = s
			}
		case "Deployment":
			var d deployment
			if decodeAs(o, &d, &errs) {
				set.deployments[o.Metadata.Name] = d
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(set.configMaps)) {
		for _, key := range slices.Sorted(maps.Keys(set.configMaps[name].Data)) {
			if slices.Contains(secretSettings, key) {
				fail("%s: ConfigMap holds the secret %s; use a Secret", set.where["ConfigMap/"+name], key)
			}
		}
	}

	workloads := map[string]workload{} // by Deployment name
	for _, name := range slices.Sorted(maps.Keys(set.deployments)) {
		w, derrs := checkDeployment(set.where["Deployment/"+name], set.deployments[name], set, df)
		errs = append(errs, derrs...)
		if w.program != "" {
			workloads[name] = w
		}
	}
	if len(workloads) == 0 {
		fail("k8s: no Deployment runs the followpush image")
	}
	programs := map[config.Program]bool{}
	for _, w := range workloads {
		programs[w.program] = true
	}
	for _, p := range []config.Program{config.ProgramReceiver, config.ProgramWorker} {
		if !programs[p] {
			fail("k8s: no Deployment runs the %s", p)
		}
	}

	for _, o := range objs {
		switch o.Kind {
		case "Service":
			var s service
			if decodeAs(o, &s, &errs) {
				errs = append(errs, checkService(o, s, set, workloads)...)
			}
		case "HorizontalPodAutoscaler":
			var h hpa
			if decodeAs(o, &h, &errs) {
				errs = append(errs, checkHPA(o, h, set)...)
			}
		case "PodDisruptionBudget":
			var p pdb
			if decodeAs(o, &p, &errs) {
				if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
					fail("%s: neither minAvailable nor maxUnavailable", o)
				}
				if !selectsDeployment(p.Spec.Selector.MatchLabels, set) {
					fail("%s: selector %v matches no Deployment's pods", o, p.Spec.Selector.MatchLabels)
				}
			}
		case "ScaledObject":
			var so scaledObject
			if decodeAs(o, &so, &errs) {
				errs = append(errs, checkScaledObject(o, so, workloads)...)
			}
		}
	}
	for _, p := range []string{"PodDisruptionBudget", "HorizontalPodAutoscaler", "ScaledObject"} {
		found := false
		for id := range set.where {
			found = found || strings.HasPrefix(id, p+"/")
		}
		if !found {
			fail("k8s: no %s", p)
		}
	}
	errs = append(errs, checkKustomization(kust, files)...)
	return errs
}

// checkDeployment checks one Deployment and returns the workload of its
// followpush container.
func checkDeployment(o object, d deployment, set k8sSet, df dockerfile) (workload, []error) {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{o}, args...)...))
	}
	pod := d.Spec.Template
	if len(d.Spec.Selector.MatchLabels) == 0 || !subset(d.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
		fail("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, pod.Metadata.Labels)
	}
	var w workload
	ours := 0
	for _, c := range pod.Spec.Containers {
		if !isOurImage(c.Image) {
			continue
		}
		ours++
		where := fmt.Sprintf("%s container %s", o, c.Name)
		cfail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{where}, args...)...))
		}
		prog, err := programOf(c.Command, df)
		if err != nil {
			cfail("%v", err)
			continue
		}
		w = workload{where: where, name: c.Name, program: prog, env: map[string]envVar{}}

		// Environment: envFrom first, then env (which wins, as in Kubernetes).
		for _, ef := range c.EnvFrom {
			switch {
			case ef.ConfigMapRef != nil:
				cm, ok := set.configMaps[ef.ConfigMapRef.Name]
				if !ok {
					if !ef.ConfigMapRef.Optional {
						cfail("envFrom ConfigMap %q is not defined in deploy/k8s", ef.ConfigMapRef.Name)
					}
					continue
				}
				for k, v := range cm.Data {
					w.env[ef.Prefix+k] = literalVar(v, "ConfigMap "+ef.ConfigMapRef.Name)
				}
			case ef.SecretRef != nil:
				s, ok := set.secrets[ef.SecretRef.Name]
				if !ok {
					cfail("envFrom Secret %q is not defined in deploy/k8s (not even as an example)", ef.SecretRef.Name)
					continue
				}
				for _, k := range s.keys() {
					w.env[ef.Prefix+k] = secretSample(set, ef.SecretRef.Name, k, false)
				}
			}
		}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom == nil:
				w.env[e.Name] = literalVar(e.Value, "env")
			case e.ValueFrom.SecretKeyRef != nil:
				r := e.ValueFrom.SecretKeyRef
				// An optional key may be left out of the example (it is
				// an alternative, or not needed by default).
				if s, ok := set.secrets[r.Name]; !ok || (!s.has(r.Key) && !r.Optional) {
					cfail("env %s: Secret %s has no key %s (see secret.example.yaml)", e.Name, r.Name, r.Key)
				}
				w.env[e.Name] = secretSample(set, r.Name, r.Key, r.Optional)
			case e.ValueFrom.ConfigMapKeyRef != nil:
				r := e.ValueFrom.ConfigMapKeyRef
				cm, ok := set.configMaps[r.Name]
				v, has := cm.Data[r.Key]
				if !ok || !has {
					cfail("env %s: ConfigMap %s has no key %s", e.Name, r.Name, r.Key)
				}
				w.env[e.Name] = literalVar(v, "ConfigMap "+r.Name)
			default:
				w.env[e.Name] = envVar{from: "valueFrom", sampleErr: errors.New("valueFrom other than secretKeyRef/configMapKeyRef: no value to check")}
			}
		}
		w.files = configMapFiles(c, pod.Spec, set)
		errs = append(errs, checkWorkload(w)...)
		if v, ok := w.env["SPOOL_DIR"]; ok {
			errs = append(errs, checkSpoolVolume(where, w, v, c, pod.Spec)...)
		}
		for _, name := range secretSettings {
			if v, ok := w.env[name]; ok && !strings.HasPrefix(v.from, "Secret ") {
				cfail("%s comes from %s; it is a secret: use a secretKeyRef", name, v.from)
			}
		}

		// Ports and probes.
		port, err := w.listenPort()
		if err == nil {
			if _, ok := c.portOf(port); !ok {
				cfail("declares no containerPort %d (%s)", port, listenSetting(prog))
			}
			for _, pr := range []struct {
				kind, path string
				p          *probe
			}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
				switch {
				case pr.p == nil || pr.p.HTTPGet == nil:
					cfail("no %s httpGet", pr.kind)
				case pr.p.HTTPGet.Path != pr.path:
					cfail("%s path %q, want %s", pr.kind, pr.p.HTTPGet.Path, pr.path)
				default:
					if got, ok := c.portOf(pr.p.HTTPGet.Port); !ok || got != port {
						cfail("%s port %v is not the port the %s serves %s on (%d, %s)", pr.kind, pr.p.HTTPGet.Port, prog, pr.path, port, listenSetting(prog))
					}
				}
			}
			ann := pod.Metadata.Annotations
			if ann["prometheus.io/scrape"] != "true" {
				cfail("pod annotation prometheus.io/scrape is %q, want \"true\"", ann["prometheus.io/scrape"])
			}
			if mport, name, err := w.metricsPort(); err == nil {
				if _, ok := c.portOf(mport); !ok {
					cfail("declares no containerPort %d (%s, /metrics)", mport, name)
				}
				if ann["prometheus.io/port"] != strconv.Itoa(mport) {
					cfail("pod annotation prometheus.io/port is %q, but /metrics is on %d (%s)", ann["prometheus.io/port"], mport, name)
				}
			}
			if p := ann["prometheus.io/path"]; p != "" && p != "/metrics" {
				cfail("pod annotation prometheus.io/path is %q, want /metrics", p)
			}
		}

		// Resources.
		for _, r := range []struct{ kind, name, value string }{
			{"requests", "cpu", c.Resources.Requests["cpu"]},
			{"requests", "memory", c.Resources.Requests["memory"]},
			{"limits", "memory", c.Resources.Limits["memory"]},
		} {
			if r.value == "" {
				cfail("no resources.%s.%s", r.kind, r.name)
			}
		}
		if lim, ok := w.env["GOMEMLIMIT"]; ok {
			limit, err1 := quantityBytes(c.Resources.Limits["memory"])
			soft, err2 := quantityBytes(strings.TrimSuffix(lim.value, "B"))
			switch {
			case err1 != nil || err2 != nil:
				cfail("cannot compare GOMEMLIMIT %q with the memory limit %q", lim.value, c.Resources.Limits["memory"])
			case soft >= limit:
				cfail("GOMEMLIMIT %s is not below the memory limit %s", lim.value, c.Resources.Limits["memory"])
			}
		}

		// Security.
		if !isTrue(c.SecurityContext.RunAsNonRoot) && !isTrue(pod.Spec.SecurityContext.RunAsNonRoot) {
			cfail("securityContext.runAsNonRoot is not true")
		}
		for _, u := range []*int64{c.SecurityContext.RunAsUser, pod.Spec.SecurityContext.RunAsUser} {
			if u != nil && *u == 0 {
				cfail("runAsUser 0")
			}
		}
		if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
			cfail("securityContext.readOnlyRootFilesystem is not true")
		}
		if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
			cfail("securityContext.allowPrivilegeEscalation is not false")
		}

		// Shutdown: the grace period covers preStop and SHUTDOWN_TIMEOUT.
		if st, err := w.shutdownTimeout(); err != nil {
			cfail("%v", err)
		} else {
			grace := 30 // Kubernetes' default
			if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = *g
			}
			pre := 0
			if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
				pre = l.PreStop.Sleep.Seconds
			}
			if time.Duration(grace)*time.Second <= st+time.Duration(pre)*time.Second {
				cfail("terminationGracePeriodSeconds %d is not above preStop sleep %ds + SHUTDOWN_TIMEOUT %s: in-flight work would be killed", grace, pre, st)
			}
		}

		// FCM credentials come from a mounted Secret.
		if v, ok := w.env["GOOGLE_APPLICATION_CREDENTIALS"]; ok {
			errs = append(errs, checkCredentialsMount(where, v, c, pod.Spec, set)...)
		}
	}
	if ours == 0 {
		fail("runs no followpush container")
	}
	if ours > 1 {
		fail("runs %d followpush containers; want one per pod", ours)
	}
	return w, errs
}

// configMapFiles returns the files the container sees from mounted
// ConfigMap volumes, by absolute path.
func configMapFiles(c container, pod podSpec, set k8sSet) map[string]string {
	files := map[string]string{}
	for _, m := range c.VolumeMounts {
		vol, ok := pod.volume(m.Name)
		if !ok || vol.ConfigMap == nil {
			continue
		}
		cm := set.configMaps[vol.ConfigMap.Name]
		paths := map[string]string{} // path in the volume → key
		if len(vol.ConfigMap.Items) > 0 {
			for _, it := range vol.ConfigMap.Items {
				paths[it.Path] = it.Key
			}
		} else {
			for k := range cm.Data {
				paths[k] = k
			}
		}
		for p, key := range paths {
			content, ok := cm.Data[key]
			if !ok {
				continue
			}
			switch {
			case m.SubPath == "":
				files[path.Join(m.MountPath, p)] = content
			case m.SubPath == p:
				files[path.Clean(m.MountPath)] = content
			}
		}
	}
	return files
}

// checkSpoolVolume checks that SPOOL_DIR is on a writable volume of the
// pod (the root filesystem is read-only): an emptyDir large enough for
// SPOOL_MAX_BYTES, or a PersistentVolumeClaim with an fsGroup so the
// non-root user can write it.
func checkSpoolVolume(where string, w workload, v envVar, c container, pod podSpec) []error {
	if !v.literal || !path.IsAbs(v.value) {
		return []error{fmt.Errorf("%s: SPOOL_DIR=%q must be an absolute path in the manifest", where, v.value)}
	}
	dir := path.Clean(v.value)
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if m.SubPath != "" || (mp != dir && !strings.HasPrefix(dir, mp+"/")) {
			continue
		}
		if m.ReadOnly {
			return []error{fmt.Errorf("%s: SPOOL_DIR %s is on read-only volumeMount %s", where, dir, m.Name)}
		}
		vol, ok := pod.volume(m.Name)
		switch {
		case !ok:
			return []error{fmt.Errorf("%s: volumeMount %s names no volume", where, m.Name)}
		case vol.EmptyDir != nil:
			if vol.EmptyDir.SizeLimit == "" {
				return nil
			}
			limit, err := quantityBytes(vol.EmptyDir.SizeLimit)
			max, _ := w.effective("SPOOL_MAX_BYTES")
			n, err2 := strconv.ParseInt(max, 10, 64)
			if err != nil || err2 != nil {
				return []error{fmt.Errorf("%s: cannot compare emptyDir sizeLimit %q with SPOOL_MAX_BYTES %q", where, vol.EmptyDir.SizeLimit, max)}
			}
			if limit <= n {
				return []error{fmt.Errorf("%s: emptyDir %s sizeLimit %s is not above SPOOL_MAX_BYTES %d: the kubelet would evict the pod before the spool reports full", where, vol.Name, vol.EmptyDir.SizeLimit, n)}
			}
			return nil
		case vol.PersistentVolumeClaim != nil:
			if pod.SecurityContext.FSGroup == nil {
				return []error{fmt.Errorf("%s: SPOOL_DIR is on PersistentVolumeClaim %s but the pod sets no fsGroup: the non-root user may not write it", where, vol.Name)}
			}
			return nil
		default:
			return []error{fmt.Errorf("%s: SPOOL_DIR %s is on volume %s, which is neither an emptyDir nor a PersistentVolumeClaim", where, dir, vol.Name)}
		}
	}
	return []error{fmt.Errorf("%s: SPOOL_DIR %s is on no volume: the root filesystem is read-only", where, dir)}
}

// checkCredentialsMount checks that the GOOGLE_APPLICATION_CREDENTIALS file
// is a key of a Secret mounted in the container.
func checkCredentialsMount(where string, v envVar, c container, pod podSpec, set k8sSet) []error {
	if !v.literal || !path.IsAbs(v.value) {
		return []error{fmt.Errorf("%s: GOOGLE_APPLICATION_CREDENTIALS must be an absolute path in the manifest, got %q", where, v.value)}
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || path.Dir(v.value) != path.Clean(m.MountPath) {
			continue
		}
		vol, ok := pod.volume(m.Name)
		if !ok {
			return []error{fmt.Errorf("%s: volumeMount %s names no volume", where, m.Name)}
		}
		if vol.Secret == nil {
			return []error{fmt.Errorf("%s: GOOGLE_APPLICATION_CREDENTIALS %s is on volume %s, which is not a Secret", where, v.value, m.Name)}
		}
		if s, ok := set.secrets[vol.Secret.SecretName]; !ok || !s.has(path.Base(v.value)) {
			return []error{fmt.Errorf("%s: GOOGLE_APPLICATION_CREDENTIALS %s: Secret %s has no key %s", where, v.value, vol.Secret.SecretName, path.Base(v.value))}
		}
		return nil
	}
	return []error{fmt.Errorf("%s: GOOGLE_APPLICATION_CREDENTIALS %s is not in any mounted volume", where, v.value)}
}

// checkService checks that a Service selects a followpush Deployment and
// forwards to the port its program listens on.
func checkService(o object, s service, set k8sSet, workloads map[string]workload) []error {
	var errs []error
	var targets []string
	for _, name := range slices.Sorted(maps.Keys(set.deployments)) {
		if len(s.Spec.Selector) > 0 && subset(s.Spec.Selector, set.deployments[name].Spec.Template.Metadata.Labels) {
			targets = append(targets, name)
		}
	}
	if len(targets) != 1 {
		return []error{fmt.Errorf("%s: selector %v matches %d Deployments (%v), want 1", o, s.Spec.Selector, len(targets), targets)}
	}
	d, w := set.deployments[targets[0]], workloads[targets[0]]
	listen, err := w.listenPort()
	if err != nil {
		return []error{fmt.Errorf("%s: %v", o, err)}
	}
	if len(s.Spec.Ports) == 0 {
		errs = append(errs, fmt.Errorf("%s: no ports", o))
	}
	for _, p := range s.Spec.Ports {
		tp := p.TargetPort
		if tp == nil {
			tp = p.Port
		}
		var got int
		var ok bool
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == w.name {
				got, ok = c.portOf(tp)
			}
		}
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: port %d targetPort %v is not a port of container %s", o, p.Port, tp, w.name))
		case got != listen:
			errs = append(errs, fmt.Errorf("%s: port %d targets %d, but the %s listens on %d", o, p.Port, got, w.program, listen))
		}
	}
	return errs
}

func checkHPA(o object, h hpa, set k8sSet) []error {
	var errs []error
	d, ok := set.deployments[h.Spec.ScaleTargetRef.Name]
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || !ok {
		return []error{fmt.Errorf("%s: scaleTargetRef %s/%s is not a Deployment defined here", o, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)}
	}
	if h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < h.Spec.MinReplicas {
		errs = append(errs, fmt.Errorf("%s: minReplicas %d, maxReplicas %d", o, h.Spec.MinReplicas, h.Spec.MaxReplicas))
	}
	for _, m := range h.Spec.Metrics {
		if m.Type != "Resource" || m.Resource == nil {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Resources.Requests[m.Resource.Name] == "" {
				errs = append(errs, fmt.Errorf("%s: scales on %s utilization but container %s requests no %s", o, m.Resource.Name, c.Name, m.Resource.Name))
			}
		}
	}
	if len(h.Spec.Metrics) == 0 {
		errs = append(errs, fmt.Errorf("%s: no metrics", o))
	}
	return errs
}

// kedaTriggerTypes are the KEDA trigger types that read a Redis list's
// length, for each Redis mode of the worker (config.Redis.Mode).
var kedaTriggerTypes = map[string]string{"url": "redis", "cluster": "redis-cluster", "sentinel": "redis-sentinel"}

// redisMode returns the Redis mode of w, as config.Redis.Mode decides it:
// a cluster, else sentinels, else REDIS_URL.
func redisMode(w workload) string {
	for _, m := range []struct{ setting, mode string }{{"REDIS_CLUSTER_ADDRS", "cluster"}, {"REDIS_SENTINEL_ADDRS", "sentinel"}} {
		if v, ok := w.env[m.setting]; ok && (!v.literal || strings.TrimSpace(v.value) != "") {
			return m.mode
		}
	}
	return "url"
}

// checkScaledObject checks the KEDA trigger: the worker Deployment, scaled
// on the length of asynq's pending list of the follow queue, in the Redis
// the worker uses: a redis trigger on REDIS_URL's address and database, a
// redis-cluster trigger on REDIS_CLUSTER_ADDRS, or a redis-sentinel
// trigger on REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER (addresses
// given literally or read from the worker's env with addressesFromEnv).
func checkScaledObject(o object, so scaledObject, workloads map[string]workload) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{o}, args...)...))
	}
	w, ok := workloads[so.Spec.ScaleTargetRef.Name]
	if !ok || (so.Spec.ScaleTargetRef.Kind != "" && so.Spec.ScaleTargetRef.Kind != "Deployment") {
		return []error{fmt.Errorf("%s: scaleTargetRef %s is not a followpush Deployment", o, so.Spec.ScaleTargetRef.Name)}
	}
	if w.program != config.ProgramWorker {
		fail("scales %s, which runs the %s, not the worker", so.Spec.ScaleTargetRef.Name, w.program)
	}
	if so.Spec.MinReplicaCount < 1 || so.Spec.MaxReplicaCount < so.Spec.MinReplicaCount {
		fail("minReplicaCount %d, maxReplicaCount %d", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	mode := redisMode(w)
	want := kedaTriggerTypes[mode]
	lists, err := followPendingKeys(w)
	if err != nil {
		fail("%v", err)
	}
	for name, other := range workloads {
		if other.program != config.ProgramReceiver {
			continue
		}
		rn, _ := other.effective("FOLLOW_QUEUE_SHARDS")
		wn, _ := w.effective("FOLLOW_QUEUE_SHARDS")
		if rn != wn {
			fail("the receiver %s has FOLLOW_QUEUE_SHARDS %s, the worker %s: give both the same (docs/operations.md)", name, rn, wn)
		}
	}
	found := 0
	watched := map[string]bool{}
	for _, tr := range so.Spec.Triggers {
		if !strings.HasPrefix(tr.Type, "redis") {
			continue
		}
		found++
		if tr.Type != want {
			fail("trigger type %s, but the worker's Redis is in %s mode: want type %s", tr.Type, mode, want)
			continue
		}
		md := tr.Metadata
		switch l := md["listName"]; {
		case !slices.Contains(lists, l):
			fail("%s trigger listName %q, want asynq's pending list of a follow queue: %q", tr.Type, l, lists)
		case watched[l]:
			fail("%s trigger listName %q: watched twice", tr.Type, l)
		}
		watched[md["listName"]] = true
		if n, err := strconv.Atoi(md["listLength"]); err != nil || n < 1 {
			fail("%s trigger listLength %q is not a positive number", tr.Type, md["listLength"])
		}
		if idx := md["databaseIndex"]; mode != "url" && idx != "" && idx != "0" {
			fail("%s trigger databaseIndex %s: in %s mode the worker uses database 0", tr.Type, idx, mode)
		}
		if _, ok := w.env["REDIS_PASSWORD"]; ok && mode != "url" && md["passwordFromEnv"] != "REDIS_PASSWORD" && tr.AuthenticationRef == nil {
			fail("the worker authenticates with REDIS_PASSWORD but the %s trigger has neither passwordFromEnv: REDIS_PASSWORD nor an authenticationRef", tr.Type)
		}
		switch mode {
		case "cluster":
			errs = append(errs, checkTriggerAddrs(o, md, "REDIS_CLUSTER_ADDRS", w)...)
		case "sentinel":
			errs = append(errs, checkTriggerAddrs(o, md, "REDIS_SENTINEL_ADDRS", w)...)
			master := w.env["REDIS_SENTINEL_MASTER"]
			switch {
			case md["sentinelMasterFromEnv"] != "":
				if md["sentinelMasterFromEnv"] != "REDIS_SENTINEL_MASTER" {
					fail("redis-sentinel trigger sentinelMasterFromEnv %s, want REDIS_SENTINEL_MASTER", md["sentinelMasterFromEnv"])
				}
			case !master.literal:
				fail("the worker's REDIS_SENTINEL_MASTER comes from %s: use sentinelMasterFromEnv: REDIS_SENTINEL_MASTER", master.from)
			case md["sentinelMaster"] != master.value:
				fail("redis-sentinel trigger sentinelMaster %q, but the worker's REDIS_SENTINEL_MASTER is %q", md["sentinelMaster"], master.value)
			}
		default:
			redisURL, literal := w.effective("REDIS_URL")
			if !literal {
				fail("the worker's REDIS_URL comes from %s: cannot check the trigger's address", w.env["REDIS_URL"].from)
				continue
			}
			addr, db, err := redisAddr(redisURL)
			if err != nil {
				fail("worker REDIS_URL %q: %v", redisURL, err)
				continue
			}
			if md["address"] != addr {
				fail("redis trigger address %q, but the worker's REDIS_URL is %s", md["address"], addr)
			}
			idx := md["databaseIndex"]
			if idx == "" {
				idx = "0"
			}
			if idx != strconv.Itoa(db) {
				fail("redis trigger databaseIndex %s, but the worker's REDIS_URL uses database %d", idx, db)
			}
		}
	}
	if found != len(lists) {
		fail("want one redis, redis-cluster or redis-sentinel trigger per follow queue (%d, FOLLOW_QUEUE_SHARDS), found %d", len(lists), found)
	}
	return errs
}

// followPendingKeys returns the pending lists of the follow queues of
// worker w's FOLLOW_QUEUE_SHARDS (tasks.Shards), which KEDA must watch.
func followPendingKeys(w workload) ([]string, error) {
	v, literal := w.effective("FOLLOW_QUEUE_SHARDS")
	if !literal {
		return nil, fmt.Errorf("the worker's FOLLOW_QUEUE_SHARDS comes from %s: the triggers cannot be checked", w.env["FOLLOW_QUEUE_SHARDS"].from)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("the worker's FOLLOW_QUEUE_SHARDS %q: %v", v, err)
	}
	shards, err := tasks.NewShards(n)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, q := range shards.Names() {
		out = append(out, pendingKey(q))
	}
	return out, nil
}

// checkTriggerAddrs checks a redis-cluster or redis-sentinel trigger's
// addresses against the worker's setting: the same list, or read from that
// very setting with addressesFromEnv.
func checkTriggerAddrs(o object, md map[string]string, setting string, w workload) []error {
	v, ok := w.env[setting]
	if !ok {
		return []error{fmt.Errorf("%s: the worker has no %s", o, setting)}
	}
	if env := md["addressesFromEnv"]; env != "" {
		if env != setting {
			return []error{fmt.Errorf("%s: trigger addressesFromEnv %s, but the worker's addresses are in %s", o, env, setting)}
		}
		return nil
	}
	if !v.literal {
		return []error{fmt.Errorf("%s: the worker's %s comes from %s: use addressesFromEnv: %s", o, setting, v.from, setting)}
	}
	if got, want := normalizeAddrs(md["addresses"]), normalizeAddrs(v.value); got != want {
		return []error{fmt.Errorf("%s: trigger addresses %q, but the worker's %s is %q", o, md["addresses"], setting, v.value)}
	}
	return nil
}

// checkKustomization checks that kustomization.yaml lists every manifest
// but the examples, and only files that exist.
func checkKustomization(k *kustomization, files map[string][]byte) []error {
	if k == nil {
		return []error{fmt.Errorf("k8s: no kustomization.yaml")}
	}
	var errs []error
	if k.Namespace != "" {
		errs = append(errs, fmt.Errorf("k8s/kustomization.yaml: sets namespace %q; the base is namespace-agnostic", k.Namespace))
	}
	for _, r := range k.Resources {
		if _, ok := files["k8s/"+r]; !ok {
			errs = append(errs, fmt.Errorf("k8s/kustomization.yaml: resource %s does not exist", r))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		base := path.Base(name)
		if path.Dir(name) != "k8s" || !isYAML(name) || base == "kustomization.yaml" {
			continue
		}
		example := strings.Contains(base, ".example.")
		listed := slices.Contains(k.Resources, base)
		switch {
		case example && listed:
			errs = append(errs, fmt.Errorf("k8s/kustomization.yaml lists %s: applying it would overwrite real secrets with placeholders", base))
		case !example && !listed:
			errs = append(errs, fmt.Errorf("k8s/kustomization.yaml does not list %s", base))
		}
	}
	for _, im := range k.Images {
		if !isOurImage(im.Name) {
			errs = append(errs, fmt.Errorf("k8s/kustomization.yaml: images entry %q is not the followpush image", im.Name))
		}
	}
	return errs
}

func selectsDeployment(sel map[string]string, set k8sSet) bool {
	if len(sel) == 0 {
		return false
	}
	for _, d := range set.deployments {
		if subset(sel, d.Spec.Template.Metadata.Labels) {
			return true
		}
	}
	return false
}

// subset reports whether every key and value of a is in b.
func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func isTrue(b *bool) bool { return b != nil && *b }

var quantityRE = regexp.MustCompile(`^(\d+)(Ki|Mi|Gi|K|M|G)?$`)

// quantityBytes parses a Kubernetes memory quantity (or a GOMEMLIMIT value
// without its trailing B) such as 128Mi.
func quantityBytes(q string) (int64, error) {
	m := quantityRE.FindStringSubmatch(q)
	if m == nil {
		return 0, fmt.Errorf("quantity %q", q)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]int64{"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[m[2]]
	return n * mult, nil
}

func TestKubernetes(t *testing.T) {
	t.Parallel()
	report(t, checkKubernetes(readDeployFiles(t), loadDockerfile(t)))
}

// TestKEDAListIsAsynqPendingKey stores follow tasks the two ways the
// service does (asynq's client, and the receiver's batch enqueuer) in a
// real redis-server and checks that the list the ScaledObject watches
// holds exactly them.
func TestKEDAListIsAsynqPendingKey(t *testing.T) {
	t.Parallel()
	objs, err := parseK8s(readDeployFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	var lists []string
	for _, o := range objs {
		if o.Kind != "ScaledObject" {
			continue
		}
		var so scaledObject
		if err := o.node.Decode(&so); err != nil {
			t.Fatal(err)
		}
		for _, tr := range so.Spec.Triggers {
			if l := tr.Metadata["listName"]; l != "" {
				lists = append(lists, l)
			}
		}
	}
	if len(lists) != 1 {
		t.Fatalf("ScaledObjects watch lists %v, want one", lists)
	}

	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now().UnixMilli()
	task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: now})
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.EnqueueContext(ctx, task); err != nil {
		t.Fatal(err)
	}
	res, err := webhook.NewAsynqEnqueuer(rdb, 1).EnqueueFollows(ctx, []tasks.Follow{
		{AppID: "1400000000", From: "alice", To: "carol", EventTime: now},
		{AppID: "1400000000", From: "alice", To: "dave", EventTime: now},
	})
	if err != nil || res.Enqueued != 2 {
		t.Fatalf("receiver enqueue: %+v, %v", res, err)
	}
	if n, err := rdb.LLen(ctx, lists[0]).Result(); err != nil || n != 3 {
		t.Errorf("LLEN %s = %d (%v), want the 3 pending follow tasks", lists[0], n, err)
	}
	if got := pendingKey(tasks.QueueFollow); got != lists[0] {
		t.Errorf("pendingKey(%s) = %q, but the ScaledObject watches %q", tasks.QueueFollow, got, lists[0])
	}
}

// TestREADMEShardTriggers checks the KEDA triggers deploy/README.md shows
// for FOLLOW_QUEUE_SHARDS=6: one per follow queue of 6 shards, in shard
// order.
func TestREADMEShardTriggers(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(deployDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "#### Sharded follow queues")
	if !ok {
		t.Fatal(`deploy/README.md has no "Sharded follow queues" section`)
	}
	section, _, _ = strings.Cut(section, "\n- ")
	var got []string
	for _, line := range strings.Split(section, "\n") {
		if l, ok := strings.CutPrefix(strings.TrimSpace(line), "listName: "); ok {
			got = append(got, strings.Trim(l, `"`))
		}
	}
	shards, err := tasks.NewShards(6)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, q := range shards.Names() {
		want = append(want, pendingKey(q))
	}
	if !slices.Equal(got, want) {
		t.Errorf("deploy/README.md's triggers for 6 shards watch %q, want %q", got, want)
	}
}
