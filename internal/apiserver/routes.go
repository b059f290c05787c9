package apiserver

import (
	"net/http"
	"runtime"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

func (s *Server) routes() {
	m := s.mux
	h := func(f handlerFunc) http.HandlerFunc { return serve(s.log, f) }

	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	m.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	m.HandleFunc("GET /readyz", h(s.readyz))
	m.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, version.Info{GitVersion: s.cfg.Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH})
	})
	m.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))

	m.HandleFunc("GET /api", s.discoveryCore)
	m.HandleFunc("GET /apis", s.discoveryGroups)
	groups := map[string]bool{}
	for _, r := range s.resources {
		groups[r.group] = true
	}
	for g := range groups {
		if g == "" {
			m.HandleFunc("GET /api/v1", s.discoveryResources(""))
			continue
		}
		m.HandleFunc("GET /apis/"+g, s.discoveryGroup(g))
		m.HandleFunc("GET /apis/"+g+"/"+v1.Version, s.discoveryResources(g))
	}
	m.HandleFunc("GET /apis/"+v1.SubresourceGroupName, s.discoveryGroup(v1.SubresourceGroupName))
	m.HandleFunc("GET /apis/"+v1.SubresourceGroupName+"/"+v1.Version, s.discoverySubresources)

	for _, r := range s.resources {
		base := "/api/" + r.version
		if r.group != "" {
			base = "/apis/" + r.group + "/" + r.version
		}
		coll := base + "/" + r.plural
		if r.namespaced {
			m.HandleFunc("GET "+coll, h(s.list(r))) // across namespaces
			coll = base + "/namespaces/{namespace}/" + r.plural
		}
		item := coll + "/{name}"
		m.HandleFunc("GET "+coll, h(s.list(r)))
		m.HandleFunc("GET "+item, h(s.get(r)))
		if r.readOnly {
			continue
		}
		m.HandleFunc("POST "+coll, h(s.create(r)))
		m.HandleFunc("DELETE "+coll, h(s.deleteCollection(r)))
		m.HandleFunc("PUT "+item, h(s.replace(r, mainResource)))
		m.HandleFunc("PATCH "+item, h(s.patch(r, mainResource)))
		m.HandleFunc("DELETE "+item, h(s.deleteHandler(r)))
		if r.hasStatus {
			m.HandleFunc("GET "+item+"/status", h(s.get(r)))
			m.HandleFunc("PUT "+item+"/status", h(s.replace(r, statusResource)))
			m.HandleFunc("PATCH "+item+"/status", h(s.patch(r, statusResource)))
		}
	}
	sub := "/apis/" + v1.SubresourceGroupName + "/" + v1.Version + "/namespaces/{namespace}/"
	m.HandleFunc("PUT "+sub+"virtualmachines/{name}/start", h(s.start))
	m.HandleFunc("PUT "+sub+"virtualmachines/{name}/stop", h(s.stop))
	m.HandleFunc("PUT "+sub+"virtualmachines/{name}/restart", h(s.restart))
	m.HandleFunc("PUT "+sub+"virtualmachineinstances/{name}/pause", h(s.pause))
	m.HandleFunc("PUT "+sub+"virtualmachineinstances/{name}/unpause", h(s.unpause))
	m.HandleFunc("PUT "+sub+"virtualmachineinstances/{name}/softreboot", h(s.softReboot))
	m.HandleFunc("GET "+sub+"virtualmachineinstances/{name}/console", h(s.console))
	m.HandleFunc("GET "+sub+"virtualmachineinstances/{name}/consolelog", h(s.consoleLog))
	m.HandleFunc("POST "+heartbeatPrefix+"{node}", h(s.heartbeat))
}

func (s *Server) readyz(w http.ResponseWriter, req *http.Request) error {
	select {
	case <-s.ready:
	default:
		writeStatus(w, metav1.Status{Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable, Message: "the watch cache is still loading"})
		return nil
	}
	if _, err := s.store.CurrentRevision(req.Context()); err != nil {
		return err
	}
	_, _ = w.Write([]byte("ok"))
	return nil
}

func groupVersion(g string) string {
	if g == "" {
		return v1.Version
	}
	return g + "/" + v1.Version
}

func (s *Server) discoveryCore(w http.ResponseWriter, req *http.Request) {
	writeJSON(w, http.StatusOK, metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{v1.Version},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: req.Host}},
	})
}

func apiGroup(g string) metav1.APIGroup {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: groupVersion(g), Version: v1.Version}
	return metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: g, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv}
}

func (s *Server) discoveryGroups(w http.ResponseWriter, _ *http.Request) {
	names := map[string]bool{v1.SubresourceGroupName: true}
	for _, r := range s.resources {
		if r.group != "" {
			names[r.group] = true
		}
	}
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for g := range names {
		list.Groups = append(list.Groups, apiGroup(g))
	}
	sort.Slice(list.Groups, func(i, j int) bool { return list.Groups[i].Name < list.Groups[j].Name })
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) discoveryGroup(g string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, apiGroup(g)) }
}

var allVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

func (s *Server) discoveryResources(g string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: groupVersion(g)}
		for _, r := range s.resources {
			if r.group != g {
				continue
			}
			verbs := allVerbs
			if r.readOnly {
				verbs = metav1.Verbs{"get", "list", "watch"}
			}
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: r.plural, SingularName: r.singular, Namespaced: r.namespaced, Kind: r.kind, Verbs: verbs, ShortNames: r.shortNames,
			})
			if r.hasStatus {
				list.APIResources = append(list.APIResources, metav1.APIResource{
					Name: r.plural + "/status", Namespaced: r.namespaced, Kind: r.kind, Verbs: metav1.Verbs{"get", "patch", "update"},
				})
			}
		}
		writeJSON(w, http.StatusOK, list)
	}
}

func (s *Server) discoverySubresources(w http.ResponseWriter, _ *http.Request) {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: groupVersion(v1.SubresourceGroupName)}
	for _, name := range []string{"virtualmachines/start", "virtualmachines/stop", "virtualmachines/restart",
		"virtualmachineinstances/pause", "virtualmachineinstances/unpause", "virtualmachineinstances/softreboot"} {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: name, Namespaced: true, Verbs: metav1.Verbs{"update"}})
	}
	list.APIResources = append(list.APIResources, metav1.APIResource{Name: "virtualmachineinstances/console", Namespaced: true, Verbs: metav1.Verbs{"get"}})
	list.APIResources = append(list.APIResources, metav1.APIResource{Name: "virtualmachineinstances/consolelog", Namespaced: true, Verbs: metav1.Verbs{"get"}})
	writeJSON(w, http.StatusOK, list)
}
