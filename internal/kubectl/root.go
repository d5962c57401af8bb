// Package kubectl is loadshed's kubectl plugin, kubectl-loadshed: one file
// per subcommand, each a cobra command built on Options. It follows
// kubectl's conventions through cli-runtime: the kubeconfig flags
// (--kubeconfig, --context, ...), -o json|yaml for machines, and colour
// only when standard output is a terminal.
package kubectl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/version"
)

// Name is the plugin's command name.
const Name = "kubectl-loadshed"

// Options is what every subcommand shares: how to reach the cluster, where
// to write, and how.
type Options struct {
	Config  *genericclioptions.ConfigFlags
	Streams genericiooptions.IOStreams
	// Output is -o: "" (text), "json" or "yaml".
	Output string
	// ColorMode is --color: auto (colour on a terminal, unless NO_COLOR is
	// set), always or never.
	ColorMode string
	// Now is the clock (tests set it).
	Now func() time.Time
}

// NewCommand returns the plugin's root command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{
		Config:  genericclioptions.NewConfigFlags(true),
		Streams: streams,
		Now:     time.Now,
	}
	cmd := &cobra.Command{
		Use:   "loadshed",
		Short: "See, explain, release and back-test what loadshed does",
		Long: "kubectl loadshed shows what the loadshed operator sees and does, who loads the API servers, " +
			"takes everything loadshed did back by hand when the operator cannot, and back-tests a " +
			"LoadShedPolicy on recorded or Prometheus data before it acts.",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl loadshed"},
		Version:       version.Line(Name),
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	cmd.SetVersionTemplate("{{.Version}}\n")
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.Config.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVarP(&o.Output, "output", "o", "", "Output format: text when empty, json or yaml.")
	cmd.PersistentFlags().StringVar(&o.ColorMode, "color", "auto",
		"Colour the text output: auto (on a terminal, unless NO_COLOR is set), always or never.")
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error { return o.validate() }
	for _, sub := range subcommands {
		cmd.AddCommand(sub(o))
	}
	return cmd
}

// subcommands are the plugin's subcommands; each file adds its own in an
// init function.
var subcommands []func(*Options) *cobra.Command

// validate checks the shared flags.
func (o *Options) validate() error {
	switch o.Output {
	case "", "json", "yaml":
	default:
		return fmt.Errorf("unknown output format %q: want json or yaml, or none for text", o.Output)
	}
	switch o.ColorMode {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("unknown --color %q: want auto, always or never", o.ColorMode)
	}
	return nil
}

// RESTConfig is the client configuration the kubeconfig flags select.
func (o *Options) RESTConfig() (*rest.Config, error) {
	cfg, err := o.Config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	return cfg, nil
}

// Client returns a client that knows loadshed's types.
func (o *Options) Client() (client.Client, error) {
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, err
	}
	s, err := scheme.New()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// Clientset returns a typed clientset (events, raw /metrics requests).
func (o *Options) Clientset() (kubernetes.Interface, error) {
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Color reports whether the text output is coloured.
func (o *Options) Color() bool {
	switch o.ColorMode {
	case "always":
		return true
	case "never":
		return false
	}
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	f, ok := o.Streams.Out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Print writes v as JSON or YAML when -o asks for it, else calls text.
func (o *Options) Print(v any, text func(w io.Writer) error) error {
	switch o.Output {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(o.Streams.Out, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = o.Streams.Out.Write(b)
		return err
	}
	return text(o.Streams.Out)
}
