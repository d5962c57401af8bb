// Package logging builds the operator's structured logger: zap, behind logr
// through zapr, also installed as klog's and controller-runtime's logger.
package logging

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Formats of the log output.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// New returns a logger writing to stderr. level is debug, info, error, or a
// logr verbosity as a number (2 logs V(2) and below); format is json or console.
func New(level, format string) (logr.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return logr.Discard(), err
	}
	var cfg zap.Config
	switch format {
	case FormatJSON:
		cfg = zap.NewProductionConfig()
	case FormatConsole:
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
	default:
		return logr.Discard(), fmt.Errorf("unknown log format %q: want %s or %s", format, FormatJSON, FormatConsole)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	z, err := cfg.Build()
	if err != nil {
		return logr.Discard(), fmt.Errorf("building logger: %w", err)
	}
	return zapr.NewLogger(z), nil
}

// parseLevel maps a level name or a logr verbosity to a zap level: logr's
// V(n) is zap level -n.
func parseLevel(level string) (zapcore.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info", "":
		return zapcore.InfoLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	v, err := strconv.Atoi(level)
	if err != nil || v < 0 || v > 10 {
		return 0, fmt.Errorf("unknown log level %q: want debug, info, error or a verbosity from 0 to 10", level)
	}
	return zapcore.Level(-v), nil
}
