package scrape

import (
	"fmt"
	"strings"
	"time"
)

// Status is how a round of scrapes went.
type Status struct {
	// LastRound is when the last round started; zero before the first.
	LastRound time.Time
	// Targets are the URLs the round scraped, or tried to: the instances
	// listed (or the configured host), and those that count as missing.
	Targets []string
	// Fallback is set when the API servers' endpoints could not be used,
	// and says why; the configured host was scraped instead.
	Fallback string
	// Failed maps each target that could not be scraped to why.
	Failed map[string]string
}

// String describes a status for conditions and logs.
func (st Status) String() string {
	var scraped []string
	for _, t := range st.Targets {
		if _, failed := st.Failed[t]; !failed {
			scraped = append(scraped, t)
		}
	}
	msg := fmt.Sprintf("scraped %d of %d API server instances", len(scraped), len(st.Targets))
	if len(scraped) > 0 {
		msg += " (" + strings.Join(scraped, ", ") + ")"
	}
	if st.Fallback != "" {
		msg += "; " + st.Fallback
	}
	return msg
}
