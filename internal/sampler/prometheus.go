package sampler

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/trigger"
)

// PrometheusInterest is what a policy with the Prometheus source needs:
// one instant query per trigger, every round.
type PrometheusInterest struct {
	Config promsource.Config
	// Queries maps a trigger's name to its PromQL expression.
	Queries map[string]string
}

// promPolicy is the Prometheus state of one policy.
type promPolicy struct {
	config  promsource.Config
	querier *promsource.Querier
	// points and messages per trigger, oldest first.
	points   map[string][]trigger.Point
	messages map[string]string
}

// PrometheusPoints returns a policy's points per trigger, oldest first, and
// for each trigger why its newest value is missing, if it is.
func (s *Sampler) PrometheusPoints(policy string) (map[string][]trigger.Point, map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.prom[policy]
	if p == nil {
		return nil, nil
	}
	points := make(map[string][]trigger.Point, len(p.points))
	for k, v := range p.points {
		points[k] = append([]trigger.Point(nil), v...)
	}
	msgs := make(map[string]string, len(p.messages))
	for k, v := range p.messages {
		msgs[k] = v
	}
	return points, msgs
}

// queryPrometheus runs every Prometheus policy's queries, concurrently,
// each bounded by its source's timeout, and records their points.
func (s *Sampler) queryPrometheus(ctx context.Context, at time.Time) {
	type job struct {
		policy, trigger, expr string
		querier               *promsource.Querier
	}
	var jobs []job
	s.mu.Lock()
	for name, in := range s.interests {
		if in.Prometheus == nil {
			delete(s.prom, name)
			continue
		}
		p := s.prom[name]
		if p == nil || !reflect.DeepEqual(p.config, in.Prometheus.Config) {
			q, err := promsource.New(in.Prometheus.Config)
			p = &promPolicy{config: in.Prometheus.Config, querier: q,
				points: map[string][]trigger.Point{}, messages: map[string]string{}}
			s.prom[name] = p
			if err != nil {
				for t := range in.Prometheus.Queries {
					p.messages[t] = err.Error()
				}
				continue
			}
		}
		if p.querier == nil {
			continue
		}
		for t, expr := range in.Prometheus.Queries {
			jobs = append(jobs, job{policy: name, trigger: t, expr: expr, querier: p.querier})
		}
	}
	s.mu.Unlock()

	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			v, _, err := j.querier.Query(ctx, j.expr, at)
			pt := trigger.Point{T: at, V: v, OK: err == nil}
			msg := ""
			if err != nil {
				msg = "query failed: " + err.Error()
				if errors.Is(err, promsource.ErrNoData) {
					msg = fmt.Sprintf("no data: %q matched no series", j.expr)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			s.recordPrometheus(j.policy, j.trigger, pt, msg)
		})
	}
	wg.Wait()
}

// recordPrometheus appends a point and trims the policy's history.
func (s *Sampler) recordPrometheus(policy, trig string, pt trigger.Point, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.prom[policy]
	in, ok := s.interests[policy]
	if p == nil || !ok {
		return
	}
	p.points[trig] = append([]trigger.Point(nil), Trim(append(p.points[trig], pt), PointTime, in.Retention)...)
	p.messages[trig] = msg
}

// PointTime is when a point was read.
func PointTime(p trigger.Point) time.Time { return p.T }
