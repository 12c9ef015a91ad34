package devhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/fhir-migrator/fhir-migrator/internal/hostroute"
)

// hostJSON is the part of host.json the local host honours.
type hostJSON struct {
	FunctionTimeout string `json:"functionTimeout"`
	CustomHandler   struct {
		Description struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			WorkingDirectory      string   `json:"workingDirectory"`
			Arguments             []string `json:"arguments"`
		} `json:"description"`
		EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
		EnableProxyingHTTPRequest   bool `json:"enableProxyingHttpRequest"`
	} `json:"customHandler"`
	Extensions struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
		ServiceBus struct {
			MaxConcurrentCalls int `json:"maxConcurrentCalls"`
		} `json:"serviceBus"`
	} `json:"extensions"`
}

// binding is one entry of function.json "bindings".
type binding struct {
	Type         string   `json:"type"`
	Direction    string   `json:"direction"`
	Name         string   `json:"name"`
	Route        *string  `json:"route"`
	Methods      []string `json:"methods"`
	Schedule     string   `json:"schedule"`
	RunOnStartup bool     `json:"runOnStartup"`
	QueueName    string   `json:"queueName"`
	Cardinality  string   `json:"cardinality"`
}

type functionJSON struct {
	Bindings []binding `json:"bindings"`
	Disabled bool      `json:"disabled"`
}

type triggerKind int

const (
	triggerHTTP triggerKind = iota
	triggerTimer
	triggerServiceBus
)

// function is one function folder, validated.
type function struct {
	Name    string
	Kind    triggerKind
	Trigger binding
	// HTTP: the route template as function.json gives it (the function's name when it has none), the http output
	// binding name, and whether the raw request is forwarded rather than wrapped in the payload form. The route
	// under the prefix and the methods are in app.Routes.
	Route    string
	HTTPOut  string
	Forward  bool
	Schedule cron.Schedule
	// ScheduleText is the schedule after %Setting% expansion.
	ScheduleText string
	Queue        string
}

// app is host.json plus every function folder.
type app struct {
	Root               string
	Executable         string
	WorkingDir         string
	Arguments          []string
	RoutePrefix        string
	MaxConcurrentCalls int
	FunctionTimeout    time.Duration
	Functions          map[string]*function
	// HTTPFunctions are in the order the host tries their routes: by name, ignoring case (see Routes).
	HTTPFunctions []*function
	// Routes are the HTTP functions' routes under RoutePrefix as the host maps them, in the host's order (by
	// function name, not by template precedence: internal/hostroute names the host's sources).
	Routes hostroute.Table
}

// ncrontab is the 6-field NCRONTAB of the timer trigger: {second} {minute} {hour} {day} {month} {day-of-week}.
var ncrontab = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

var settingRef = regexp.MustCompile(`%([^%\s]+)%`)

// expandSettings replaces every %Name% with the app setting; a missing setting is an error naming it, as the
// real host refuses to start such a function.
func expandSettings(s string, settings map[string]string) (string, error) {
	var missing []string
	out := settingRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[1 : len(ref)-1]
		v, ok := settings[name]
		if !ok {
			missing = append(missing, name)
			return ref
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("app setting %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// loadApp reads host.json and every */function.json under root.
func loadApp(root, executableOverride string, settings map[string]string) (*app, error) {
	raw, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return nil, fmt.Errorf("read host.json: %w", err)
	}
	var hj hostJSON
	if err := json.Unmarshal(raw, &hj); err != nil {
		return nil, fmt.Errorf("parse host.json: %w", err)
	}
	a := &app{Root: root, RoutePrefix: "api", MaxConcurrentCalls: 16, FunctionTimeout: 5 * time.Minute,
		Functions: map[string]*function{}}
	desc := hj.CustomHandler.Description
	a.Executable = desc.DefaultExecutablePath
	if executableOverride != "" {
		a.Executable = executableOverride
	}
	if a.Executable == "" {
		return nil, errors.New("host.json: customHandler.description.defaultExecutablePath is empty")
	}
	if !filepath.IsAbs(a.Executable) {
		a.Executable = filepath.Join(root, a.Executable)
	}
	a.WorkingDir = root
	if desc.WorkingDirectory != "" {
		a.WorkingDir = desc.WorkingDirectory
		if !filepath.IsAbs(a.WorkingDir) {
			a.WorkingDir = filepath.Join(root, a.WorkingDir)
		}
	}
	for i, arg := range desc.Arguments {
		v, err := expandSettings(arg, settings)
		if err != nil {
			return nil, fmt.Errorf("host.json customHandler argument %d: %w", i, err)
		}
		a.Arguments = append(a.Arguments, v)
	}
	if p := hj.Extensions.HTTP.RoutePrefix; p != nil {
		a.RoutePrefix = strings.Trim(*p, "/")
	}
	if n := hj.Extensions.ServiceBus.MaxConcurrentCalls; n > 0 {
		a.MaxConcurrentCalls = n
	}
	if hj.FunctionTimeout != "" {
		d, err := parseTimeSpan(hj.FunctionTimeout)
		if err != nil {
			return nil, fmt.Errorf("host.json functionTimeout: %w", err)
		}
		if d > 0 {
			a.FunctionTimeout = d
		}
	}
	forward := hj.CustomHandler.EnableForwardingHTTPRequest || hj.CustomHandler.EnableProxyingHTTPRequest

	files, err := filepath.Glob(filepath.Join(root, "*", "function.json"))
	if err != nil {
		return nil, fmt.Errorf("list function folders: %w", err)
	}
	queues := map[string]string{}
	var routes []hostroute.Function
	for _, file := range files {
		name := filepath.Base(filepath.Dir(file))
		fn, err := loadFunction(file, name, forward, settings)
		if err != nil {
			return nil, err
		}
		if fn == nil || settings["AzureWebJobs."+name+".Disabled"] == "true" {
			continue
		}
		if fn.Kind == triggerServiceBus {
			if other, ok := queues[fn.Queue]; ok {
				return nil, fmt.Errorf("function %s: queue %q already triggers %s (competing consumers are not supported locally)", name, fn.Queue, other)
			}
			queues[fn.Queue] = name
		}
		a.Functions[name] = fn
		if fn.Kind == triggerHTTP {
			tmpl, err := hostroute.Parse(hostroute.Join(a.RoutePrefix, fn.Route))
			if err != nil {
				return nil, fmt.Errorf("function %s: %w", name, err)
			}
			var methods []string
			for _, m := range fn.Trigger.Methods {
				methods = append(methods, strings.ToUpper(m))
			}
			routes = append(routes, hostroute.Function{Name: name, Template: tmpl, Methods: methods})
		}
	}
	if len(a.Functions) == 0 {
		return nil, fmt.Errorf("no function.json under %s", root)
	}
	a.Routes = hostroute.NewTable(routes)
	for _, r := range a.Routes {
		a.HTTPFunctions = append(a.HTTPFunctions, a.Functions[r.Name])
	}
	return a, nil
}

func loadFunction(file, name string, forwardEnabled bool, settings map[string]string) (*function, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var fj functionJSON
	if err := json.Unmarshal(raw, &fj); err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	if fj.Disabled {
		return nil, nil
	}
	fn := &function{Name: name}
	var triggers, others int
	for _, b := range fj.Bindings {
		if b.Name == "" {
			return nil, fmt.Errorf("function %s: a binding of type %q has no name", name, b.Type)
		}
		if strings.EqualFold(b.Cardinality, "many") {
			return nil, fmt.Errorf("function %s binding %s: cardinality \"many\" is not supported by custom handlers", name, b.Name)
		}
		switch strings.ToLower(b.Type) {
		case "httptrigger":
			triggers++
			fn.Kind, fn.Trigger = triggerHTTP, b
		case "timertrigger":
			triggers++
			fn.Kind, fn.Trigger = triggerTimer, b
		case "servicebustrigger":
			triggers++
			fn.Kind, fn.Trigger = triggerServiceBus, b
		case "http":
			if !strings.EqualFold(b.Direction, "out") {
				return nil, fmt.Errorf("function %s binding %s: an http binding must have direction out", name, b.Name)
			}
			fn.HTTPOut = b.Name
			others++
		default:
			if strings.HasSuffix(strings.ToLower(b.Type), "trigger") {
				return nil, fmt.Errorf("function %s: trigger type %q is not supported by the local host", name, b.Type)
			}
			return nil, fmt.Errorf("function %s: binding type %q is not supported by the local host", name, b.Type)
		}
	}
	if triggers != 1 {
		return nil, fmt.Errorf("function %s: want exactly one trigger binding, found %d", name, triggers)
	}
	switch fn.Kind {
	case triggerHTTP:
		fn.Route = name
		if r := fn.Trigger.Route; r != nil && *r != "" {
			fn.Route = *r
		}
		// ScriptHost.ValidateHttpFunction: the built-in routes' space is refused.
		if r := strings.ToLower(strings.Trim(fn.Route, "/")); strings.HasPrefix(r, "admin") || strings.HasPrefix(r, "runtime") {
			return nil, fmt.Errorf("function %s: route %q conflicts with the host's built-in routes", name, fn.Route)
		}
		fn.Forward = forwardEnabled && fn.HTTPOut != "" && others == 1 && len(fj.Bindings) == 2
	case triggerTimer:
		if fn.HTTPOut != "" {
			return nil, fmt.Errorf("function %s: an http output needs an http trigger", name)
		}
		text, err := expandSettings(fn.Trigger.Schedule, settings)
		if err != nil {
			return nil, fmt.Errorf("function %s timer schedule %q: %w", name, fn.Trigger.Schedule, err)
		}
		sched, err := ncrontab.Parse(strings.TrimSpace(text))
		if err != nil {
			return nil, fmt.Errorf("function %s timer schedule %q: want 6-field NCRONTAB: %w", name, text, err)
		}
		fn.Schedule, fn.ScheduleText = sched, text
	case triggerServiceBus:
		if fn.HTTPOut != "" {
			return nil, fmt.Errorf("function %s: an http output needs an http trigger", name)
		}
		q, err := expandSettings(fn.Trigger.QueueName, settings)
		if err != nil {
			return nil, fmt.Errorf("function %s queueName: %w", name, err)
		}
		if q == "" {
			return nil, fmt.Errorf("function %s: serviceBusTrigger without queueName (topics are not supported locally)", name)
		}
		fn.Queue = q
	}
	return fn, nil
}

// parseTimeSpan reads a .NET TimeSpan "[d.]hh:mm:ss[.fff]"; "-1" (unbounded in Azure) gives 0, which leaves the
// local host's default in force.
func parseTimeSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "-1" {
		return 0, nil
	}
	var days int
	if i := strings.Index(s, "."); i >= 0 && i < strings.Index(s, ":") {
		d, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("timespan %q: %w", s, err)
		}
		days, s = d, s[i+1:]
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("timespan %q: want hh:mm:ss", s)
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, fmt.Errorf("timespan %q: %w", s, err)
	}
	return time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec*float64(time.Second)), nil
}
