package app

import (
	"io"
	"log/slog"

	"github.com/followpush/followpush/config"
)

// Program describes one of the followpush programs for [Program.Start]:
// its name and one-line summary (the head of -h's usage, see
// [config.PrintUsage]), how it loads its settings of type C, and which of
// them is its log level.
type Program[C any] struct {
	Name     config.Program
	Summary  string
	Load     func(getenv func(string) string) (C, error)
	LogLevel func(C) string
}

// Start is how each program's run begins: it parses args for -h (see
// [ParseFlags]; usage goes to stdout), loads the settings from getenv
// ([BadConfig] when they are wrong) and starts logging to stderr at their
// log level (see [StartLogging]). The program defers the returned func,
// which writes out the pending log lines.
func (p Program[C]) Start(args []string, getenv func(string) string, stdout, stderr io.Writer) (C, *slog.Logger, func(), error) {
	var cfg C
	usage := func(w io.Writer) { config.PrintUsage(w, p.Name, p.Summary) }
	if err := ParseFlags(args, stdout, usage); err != nil {
		return cfg, nil, nil, err
	}
	cfg, err := p.Load(getenv)
	if err != nil {
		return cfg, nil, nil, BadConfig(err)
	}
	log, flushLogs := StartLogging(stderr, p.LogLevel(cfg))
	return cfg, log, flushLogs, nil
}
