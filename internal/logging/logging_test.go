package logging

import (
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    zapcore.Level
		wantErr bool
	}{
		{in: "info", want: zapcore.InfoLevel},
		{in: "", want: zapcore.InfoLevel},
		{in: "DEBUG", want: zapcore.DebugLevel},
		{in: "error", want: zapcore.ErrorLevel},
		{in: "4", want: zapcore.Level(-4)},
		{in: "11", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "verbose", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseLevel(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewRejectsAnUnknownFormat(t *testing.T) {
	if _, err := New("info", "xml"); err == nil {
		t.Fatal("New accepted format xml")
	}
	for _, f := range []string{FormatJSON, FormatConsole} {
		if _, err := New("info", f); err != nil {
			t.Errorf("New(info, %s): %v", f, err)
		}
	}
}
