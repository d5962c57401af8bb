package promserver

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"time"

	"sigs.k8s.io/yaml"
)

// DefaultScrapeInterval is how often targets are scraped when
// Options.ScrapeInterval is zero.
const DefaultScrapeInterval = time.Second

// The parts of Prometheus's configuration file written here: a global
// scrape interval and timeout, and a job per Job, each with static
// targets. Static targets are scraped as long as Prometheus runs: a target
// down (a kube-apiserver stopped) is up=0 until it answers again at the same
// address.
type (
	promConfig struct {
		Global        globalConfig      `json:"global"`
		ScrapeConfigs []scrapeJobConfig `json:"scrape_configs"`
	}
	globalConfig struct {
		ScrapeInterval string `json:"scrape_interval"`
		ScrapeTimeout  string `json:"scrape_timeout"`
	}
	scrapeJobConfig struct {
		JobName       string         `json:"job_name"`
		Scheme        string         `json:"scheme"`
		MetricsPath   string         `json:"metrics_path"`
		Authorization authorization  `json:"authorization"`
		TLSConfig     tlsConfig      `json:"tls_config"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	authorization struct {
		Type            string `json:"type"`
		CredentialsFile string `json:"credentials_file"`
	}
	tlsConfig struct {
		CAFile     string `json:"ca_file"`
		ServerName string `json:"server_name,omitempty"`
	}
	staticConfig struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	}
)

// scrapeConfig returns Prometheus's configuration file for opts; write
// stores a job's token and CA (a file name, its content) and returns the
// path it wrote.
func scrapeConfig(opts Options, write func(file string, data []byte) (string, error)) ([]byte, error) {
	interval := cmp.Or(opts.ScrapeInterval, DefaultScrapeInterval)
	timeout := min(cmp.Or(opts.ScrapeTimeout, interval), interval)
	if interval < time.Millisecond || timeout < time.Millisecond {
		return nil, fmt.Errorf("scrape interval %v and timeout %v: want at least 1ms", interval, timeout)
	}
	cfg := promConfig{Global: globalConfig{ScrapeInterval: promDuration(interval), ScrapeTimeout: promDuration(timeout)}}
	if len(opts.Jobs) == 0 {
		return nil, errors.New("no scrape job")
	}
	for _, j := range opts.Jobs {
		token, err := write(j.Name+".token", []byte(j.Token))
		if err != nil {
			return nil, err
		}
		ca, err := write(j.Name+"-ca.crt", j.CA)
		if err != nil {
			return nil, err
		}
		job := scrapeJobConfig{JobName: j.Name, Scheme: "https", MetricsPath: cmp.Or(j.MetricsPath, "/metrics"),
			Authorization: authorization{Type: "Bearer", CredentialsFile: token},
			TLSConfig:     tlsConfig{CAFile: ca, ServerName: j.ServerName}}
		for _, t := range j.Targets {
			if _, _, err := net.SplitHostPort(t.Address); err != nil {
				return nil, fmt.Errorf("job %s: target %q: %w", j.Name, t.Address, err)
			}
			sc := staticConfig{Targets: []string{t.Address}}
			if t.Instance != "" {
				// An instance label set on the target is kept; Prometheus
				// sets it to the address only when there is none.
				sc.Labels = map[string]string{"instance": t.Instance}
			}
			job.StaticConfigs = append(job.StaticConfigs, sc)
		}
		cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, job)
	}
	return yaml.Marshal(cfg)
}

// promDuration writes d as Prometheus parses durations: whole
// milliseconds ("1500ms"; it takes no fractions such as Go's "1.5s").
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}
