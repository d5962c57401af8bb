// Package apfdump reads what API Priority and Fairness (APF) says it is
// holding: the requests each kube-apiserver is executing or has queued, as
// its debug endpoint /debug/api_priority_and_fairness/dump_requests lists
// them, with the user each request was authenticated as
// (?includeRequestDetails=1).
//
// loadshed samples this endpoint once per round on every API server to find
// who loads them, whoever they are: a ServiceAccount of any workload, a
// node, a user. It costs one request per API server per round whatever the
// number of clients, and no object in the cluster. What a sample cannot see:
// requests that begin and end between two samples (a flood of cheap
// requests shows only in proportion to the time its requests spend in the
// API server, which is what it costs the others), requests APF does not
// hold (long-running watches, and the exempt level's requests on some
// versions), and API servers the endpoint is disabled on
// (--enable-priority-and-fairness=false, or the debug handlers off).
//
// The package is pure: Parse reads the text, Summarize folds it.
package apfdump

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Path is the endpoint's path, and Query the query that adds each request's
// user, verb and resource.
const (
	Path  = "/debug/api_priority_and_fairness/dump_requests"
	Query = "includeRequestDetails=1"
)

// Request is one request APF holds.
type Request struct {
	PriorityLevel string
	FlowSchema    string
	// Executing is false for a request waiting in a queue.
	Executing bool
	// Seats is what APF reserved for it at the start (its initial seats):
	// 1 for most requests, up to 10 for a LIST of many objects.
	Seats    int
	User     string
	Verb     string
	Path     string
	Resource string
}

// The columns of a row, as k8s.io/apiserver's apf_controller_debug.go
// writes them: ten always, eight more with request details. Columns are
// separated by "," and padding.
const (
	colPriorityLevel = 0
	colFlowSchema    = 1
	colRequestIndex  = 3
	colInitialSeats  = 6
	colUser          = 10
	colVerb          = 11
	colPath          = 12
	colResource      = 16
	detailedColumns  = 18
)

// Parse reads a dump written with request details. The first line must be
// the header; a dump without details (no UserName column) is an error, as
// it cannot name anyone. A row with more columns than the header (a user
// or flow distinguisher with a comma in it) cannot be split for sure: it is
// skipped and counted in unreadable.
func Parse(r io.Reader) (reqs []Request, unreadable int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("empty dump: no header")
	}
	header := fields(sc.Text())
	if len(header) != detailedColumns || header[colPriorityLevel] != "PriorityLevelName" || header[colUser] != "UserName" {
		return nil, 0, fmt.Errorf("unexpected header %q: want APF's dump_requests with request details", sc.Text())
	}
	for line := 2; sc.Scan(); line++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		f := fields(text)
		if len(f) > detailedColumns {
			unreadable++
			continue
		}
		req, err := parseRow(f)
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: %w", line, err)
		}
		reqs = append(reqs, req)
	}
	return reqs, unreadable, sc.Err()
}

// fields splits a row at its commas and trims the padding; an empty
// column (an empty namespace, say) stays an empty field.
func fields(line string) []string {
	parts := strings.Split(line, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func parseRow(f []string) (Request, error) {
	if len(f) < detailedColumns {
		return Request{}, fmt.Errorf("%d columns, want %d", len(f), detailedColumns)
	}
	seats, err := strconv.Atoi(f[colInitialSeats])
	if err != nil {
		return Request{}, fmt.Errorf("initial seats %q: %w", f[colInitialSeats], err)
	}
	// A request executing has index -1 in its queue (it left it), or is
	// "queueless" (-1 for both queue and index).
	return Request{
		PriorityLevel: f[colPriorityLevel],
		FlowSchema:    f[colFlowSchema],
		Executing:     f[colRequestIndex] == "-1",
		Seats:         seats,
		User:          f[colUser],
		Verb:          f[colVerb],
		Path:          f[colPath],
		Resource:      f[colResource],
	}, nil
}

// Load is what one client had in the API servers at one sample.
type Load struct {
	// Requests are its requests executing or waiting in a queue.
	Requests int
	// Waiting are those of them still in a queue.
	Waiting int
	// Seats are the seats its requests reserve (initial seats), waiting
	// ones included: what it asks of the API servers' concurrency.
	Seats int
}

// Add adds o to l.
func (l *Load) Add(o Load) {
	l.Requests += o.Requests
	l.Waiting += o.Waiting
	l.Seats += o.Seats
}

// Summary is one sample folded by user.
type Summary struct {
	// ByUser maps each user with a request held to its load.
	ByUser map[string]Load
	// Total is every request's load, the users' summed.
	Total Load
}

// Exempt is APF's exempt priority level: its requests are never queued nor
// limited, and take no seat from anyone else's level.
const Exempt = "exempt"

// Summarize folds requests by user. Left out: the requests on the exempt
// level (system:masters, health probes, loadshed itself through its
// self-protection schema), which compete for no one's seats and which no
// throttle can touch; and the requests that read this very dump (a GET of
// Path), which would make whoever samples APF a client of every sample.
func Summarize(reqs []Request) Summary {
	s := Summary{ByUser: map[string]Load{}}
	for _, r := range reqs {
		if r.PriorityLevel == Exempt || r.Path == Path {
			continue
		}
		l := Load{Requests: 1, Seats: r.Seats}
		if !r.Executing {
			l.Waiting = 1
		}
		u := s.ByUser[r.User]
		u.Add(l)
		s.ByUser[r.User] = u
		s.Total.Add(l)
	}
	return s
}

// Trim keeps the n users with the most seats (ties: most requests, then by
// name) and drops the others from ByUser, not from Total: a sample of an
// API server holding requests of thousands of clients stays small, and
// the shares of those kept stay true.
func (s *Summary) Trim(n int) {
	if len(s.ByUser) <= n {
		return
	}
	users := make([]string, 0, len(s.ByUser))
	for u := range s.ByUser {
		users = append(users, u)
	}
	slices.SortFunc(users, func(a, b string) int {
		la, lb := s.ByUser[a], s.ByUser[b]
		return cmp.Or(cmp.Compare(lb.Seats, la.Seats), cmp.Compare(lb.Requests, la.Requests), cmp.Compare(a, b))
	})
	for _, u := range users[n:] {
		delete(s.ByUser, u)
	}
}
