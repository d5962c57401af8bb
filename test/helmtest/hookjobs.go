package helmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/loadshed/loadshed/internal/replay"
)

// HookJobOptions say which Jobs RunHookJobs runs, and how.
type HookJobOptions struct {
	// Namespace is where the Jobs are created (the release's).
	Namespace string
	// Binaries maps the path a Job's container runs (its command[0], e.g.
	// /loadshed-operator) to the local binary to run instead. A Job whose
	// container runs anything else fails, with that said in its run.
	Binaries map[string]string
	// Dir holds each run's kubeconfig and output.
	Dir string
	// ProxyURL, when set, is the proxy the runs reach the cluster through
	// (localcluster.Cluster.ProxyURL).
	ProxyURL string
}

// JobRun is what one Job's run did.
type JobRun struct {
	// Job is the Job's name.
	Job string
	// Args are the arguments its container was run with.
	Args []string
	// Output is its combined standard output and error.
	Output string
	// Err is how it failed; nil when it exited 0.
	Err error
}

// HookJobs plays the kubelet and the Job controller for the Jobs of a
// namespace: each new Job's first container is run once as a local process,
// with a token of the Job's ServiceAccount, and the Job's status is then
// set as the Job controller sets it, Complete or Failed. Stop it when done.
type HookJobs struct {
	cs     kubernetes.Interface
	base   *rest.Config
	opts   HookJobOptions
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	runs   []JobRun
	err    error
}

// RunHookJobs starts running the Jobs created in opts.Namespace from now
// on, polling for them, with base's rights to read Jobs, request tokens and
// write Job status. The cluster's Job controller must be off
// (testenv.Options.DisabledControllers: "job-controller"), or both would
// write the Jobs' status.
func RunHookJobs(base *rest.Config, opts HookJobOptions) (*HookJobs, error) {
	cs, err := kubernetes.NewForConfig(base)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &HookJobs{cs: cs, base: base, opts: opts, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		seen := map[types.UID]bool{}
		for ctx.Err() == nil {
			if err := h.runNew(ctx, seen); err != nil && ctx.Err() == nil {
				h.mu.Lock()
				h.err = errors.Join(h.err, err)
				h.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return h, nil
}

// runNew runs, one after the other, the Jobs not seen before that have not
// finished.
func (h *HookJobs) runNew(ctx context.Context, seen map[types.UID]bool) error {
	jobs, err := h.cs.BatchV1().Jobs(h.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing Jobs: %w", err)
	}
	for i := range jobs.Items {
		job := &jobs.Items[i]
		if seen[job.UID] || finished(job) {
			continue
		}
		seen[job.UID] = true
		if err := h.run(ctx, job); err != nil {
			return fmt.Errorf("running Job %s: %w", job.Name, err)
		}
	}
	return nil
}

// run runs a Job's first container and records its outcome in the Job's
// status.
func (h *HookJobs) run(ctx context.Context, job *batchv1.Job) error {
	start := metav1.Now()
	job.Status.StartTime = &start
	job.Status.Active = 1
	job, err := h.cs.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("marking it started: %w", err)
	}
	c := job.Spec.Template.Spec.Containers[0]
	run := JobRun{Job: job.Name, Args: c.Args}
	run.Output, run.Err = h.execute(ctx, job, c)
	h.mu.Lock()
	h.runs = append(h.runs, run)
	h.mu.Unlock()
	job.Status.Active = 0
	now := metav1.Now()
	if run.Err == nil {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = append(job.Status.Conditions,
			condition(batchv1.JobSuccessCriteriaMet, "CompletionsReached", "Reached expected number of succeeded pods", now),
			condition(batchv1.JobComplete, "CompletionsReached", "Reached expected number of succeeded pods", now))
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = append(job.Status.Conditions,
			condition(batchv1.JobFailureTarget, "BackoffLimitExceeded", "Job has reached the specified backoff limit", now),
			condition(batchv1.JobFailed, "BackoffLimitExceeded", "Job has reached the specified backoff limit", now))
	}
	if _, err := h.cs.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("marking it finished: %w", err)
	}
	return nil
}

// execute runs container c of job as a local process, authenticated as the
// Job's ServiceAccount, and returns its output.
func (h *HookJobs) execute(ctx context.Context, job *batchv1.Job, c corev1.Container) (string, error) {
	opts := h.opts
	if len(c.Command) == 0 {
		return "", errors.New("the container has no command: the image's entrypoint is not known here")
	}
	bin, ok := opts.Binaries[c.Command[0]]
	if !ok {
		return "", fmt.Errorf("no local binary for %s", c.Command[0])
	}
	sa := job.Spec.Template.Spec.ServiceAccountName
	token, err := replay.ServiceAccountToken(ctx, h.base, job.Namespace, sa)
	if err != nil {
		return "", err
	}
	kubeconfig := filepath.Join(opts.Dir, job.Name+"-"+string(job.UID)+".kubeconfig")
	if err := replay.WriteKubeconfig(kubeconfig, h.base, token, opts.ProxyURL); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append(c.Command[1:], c.Args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE="+job.Namespace)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	_ = os.WriteFile(filepath.Join(opts.Dir, job.Name+".log"), out.Bytes(), 0o644)
	return out.String(), err
}

func condition(t batchv1.JobConditionType, reason, message string, now metav1.Time) batchv1.JobCondition {
	return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: message,
		LastProbeTime: now, LastTransitionTime: now}
}

func finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Runs are the Jobs run so far.
func (h *HookJobs) Runs() []JobRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]JobRun(nil), h.runs...)
}

// Stop stops running Jobs (one running is killed) and returns the errors
// met reading or writing Jobs.
func (h *HookJobs) Stop() error {
	h.cancel()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
