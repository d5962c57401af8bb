package promserver

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestTheConfigurationScrapesEachTargetUnderItsInstanceLabel(t *testing.T) {
	dir := t.TempDir()
	written := map[string]string{}
	write := func(file string, data []byte) (string, error) {
		written[file] = string(data)
		return filepath.Join(dir, file), nil
	}
	opts := Options{ScrapeInterval: 1500 * time.Millisecond, ScrapeTimeout: 5 * time.Second, Jobs: []Job{{
		Name: "apiserver", CA: []byte("ca"), ServerName: "kubernetes.default.svc", Token: "token",
		Targets: []Target{{Address: "127.0.0.1:6443", Instance: "192.0.2.1:6443"}, {Address: "127.0.0.2:6443"}},
	}}}
	data, err := scrapeConfig(opts, write)
	if err != nil {
		t.Fatal(err)
	}
	var got promConfig
	if err := yaml.UnmarshalStrict(data, &got); err != nil {
		t.Fatal(err)
	}
	// Prometheus takes no fractional seconds, and no timeout past the interval.
	if got.Global.ScrapeInterval != "1500ms" || got.Global.ScrapeTimeout != "1500ms" {
		t.Errorf("scrape interval %s and timeout %s, want 1500ms both", got.Global.ScrapeInterval, got.Global.ScrapeTimeout)
	}
	job := got.ScrapeConfigs[0]
	if job.JobName != "apiserver" || job.Scheme != "https" || job.MetricsPath != "/metrics" ||
		job.TLSConfig.ServerName != "kubernetes.default.svc" || job.Authorization.Type != "Bearer" {
		t.Errorf("job %+v", job)
	}
	if written["apiserver.token"] != "token" || written["apiserver-ca.crt"] != "ca" ||
		job.Authorization.CredentialsFile != filepath.Join(dir, "apiserver.token") ||
		job.TLSConfig.CAFile != filepath.Join(dir, "apiserver-ca.crt") {
		t.Errorf("the token and CA files: %v, job %+v", written, job)
	}
	if len(job.StaticConfigs) != 2 || job.StaticConfigs[0].Labels["instance"] != "192.0.2.1:6443" ||
		job.StaticConfigs[1].Labels != nil || job.StaticConfigs[1].Targets[0] != "127.0.0.2:6443" {
		t.Errorf("static configs %+v: want the first labelled with its published address, the second as it is", job.StaticConfigs)
	}
}

func TestATargetWithoutAPortIsRefused(t *testing.T) {
	_, err := scrapeConfig(Options{Jobs: []Job{{Name: "apiserver", Targets: []Target{{Address: "127.0.0.1"}}}}},
		func(string, []byte) (string, error) { return "", nil })
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("err = %v, want the target named", err)
	}
}
