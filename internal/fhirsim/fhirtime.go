package fhirsim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// instantLayout is how the simulator writes meta.lastUpdated and transaction times.
const instantLayout = "2006-01-02T15:04:05.000Z07:00"

func formatInstant(t time.Time) string { return t.UTC().Format(instantLayout) }

var fhirDateTimeRE = regexp.MustCompile(
	`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// timeRange is the span a FHIR date/dateTime/instant stands for at its precision: [start, end).
type timeRange struct {
	start, end time.Time
}

// parseFHIRTime parses a FHIR date, dateTime or instant ("2020", "2020-01", "2020-01-02", "2020-01-02T03:04:05.678Z")
// into the range its precision covers. A value without a zone is taken as UTC. Fractions have 1 to 7 digits: the
// service keeps 100 ns ticks and refuses an 8th or 9th digit.
func parseFHIRTime(s string) (timeRange, error) {
	m := fhirDateTimeRE.FindStringSubmatch(s)
	if m == nil {
		return timeRange{}, fmt.Errorf("%q is not a valid FHIR date, dateTime or instant", s)
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i]) // the pattern guarantees digits
		return n
	}
	year, month, day := num(1, 0), num(2, 1), num(3, 1)
	hour, minute, sec := num(4, 0), num(5, 0), num(6, 0)
	nanos := 0
	if m[7] != "" {
		nanos, _ = strconv.Atoi(m[7] + strings.Repeat("0", 9-len(m[7])))
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return timeRange{}, fmt.Errorf("%q is out of range", s)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		h, _ := strconv.Atoi(z[1:3])
		mm, _ := strconv.Atoi(z[4:6])
		if h > 14 || mm > 59 {
			return timeRange{}, fmt.Errorf("%q has an invalid zone offset", s)
		}
		off := h*3600 + mm*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(z, off)
	}
	start := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	if start.Day() != day {
		return timeRange{}, fmt.Errorf("%q is not a calendar date", s)
	}
	var end time.Time
	switch {
	case m[7] != "":
		unit := time.Duration(1)
		for range 9 - len(m[7]) {
			unit *= 10
		}
		end = start.Add(unit)
	case m[6] != "":
		end = start.Add(time.Second)
	case m[4] != "":
		end = start.Add(time.Minute)
	case m[3] != "":
		end = start.AddDate(0, 0, 1)
	case m[2] != "":
		end = start.AddDate(0, 1, 0)
	default:
		end = start.AddDate(1, 0, 0)
	}
	return timeRange{start: start.UTC(), end: end.UTC()}, nil
}

// dateFilter is one _lastUpdated search value with its prefix.
type dateFilter struct {
	prefix string // eq, ne, gt, ge, lt, le
	r      timeRange
}

// parseDateFilter parses a date search value such as "ge2020-01-01" (no prefix means eq).
func parseDateFilter(v string) (dateFilter, error) {
	prefix := "eq"
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
		switch prefix {
		case "eq", "ne", "gt", "ge", "lt", "le":
		default:
			return dateFilter{}, fmt.Errorf("date prefix %q is not supported", prefix)
		}
	}
	r, err := parseFHIRTime(v)
	if err != nil {
		return dateFilter{}, err
	}
	return dateFilter{prefix: prefix, r: r}, nil
}

func (f dateFilter) match(t time.Time) bool {
	inRange := !t.Before(f.r.start) && t.Before(f.r.end)
	switch f.prefix {
	case "ne":
		return !inRange
	case "gt":
		return !t.Before(f.r.end)
	case "ge":
		return !t.Before(f.r.start)
	case "lt":
		return t.Before(f.r.start)
	case "le":
		return t.Before(f.r.end)
	default:
		return inRange
	}
}
