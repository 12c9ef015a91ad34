package migration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// maxPathsPerResource bounds the differing paths reported for one resource.
const maxPathsPerResource = 20

// ignoredPaths are the JSON paths the import legitimately changes: InitialLoad sets versionId and lastUpdated;
// SearchParameter resources are copied with PUTs, which do the same.
func ignoredPaths(resourceType, importMode string) map[string]bool {
	if importMode == ModeInitial || resourceType == typeSearchParameter {
		return map[string]bool{"meta.versionId": true, "meta.lastUpdated": true}
	}
	return nil
}

// differences compares an exported resource with the destination's copy and returns the JSON paths that differ
// (such as "name[0].given[1]"), sorted, at most maxPathsPerResource.
func differences(exported, destination []byte, ignore map[string]bool) ([]string, error) {
	var a, b any
	if err := json.Unmarshal(exported, &a); err != nil {
		return nil, fmt.Errorf("exported resource: %w", err)
	}
	if err := json.Unmarshal(destination, &b); err != nil {
		return nil, fmt.Errorf("destination resource: %w", err)
	}
	var paths []string
	diffValues("", a, b, ignore, &paths)
	slices.Sort(paths)
	if len(paths) > maxPathsPerResource {
		paths = append(paths[:maxPathsPerResource], fmt.Sprintf("... %d more", len(paths)-maxPathsPerResource))
	}
	return paths, nil
}

func diffValues(path string, a, b any, ignore map[string]bool, out *[]string) {
	if ignore[path] {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, rootName(path))
			return
		}
		for k, x := range av {
			y, present := bv[k]
			if !present {
				if !ignore[join(path, k)] {
					*out = append(*out, join(path, k))
				}
				continue
			}
			diffValues(join(path, k), x, y, ignore, out)
		}
		for k := range bv {
			if _, present := av[k]; !present && !ignore[join(path, k)] && !onlyIgnored(join(path, k), bv[k], ignore) {
				*out = append(*out, join(path, k))
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			*out = append(*out, rootName(path))
			return
		}
		for i := range av {
			diffValues(path+"["+strconv.Itoa(i)+"]", av[i], bv[i], ignore, out)
		}
	default:
		if a != b {
			*out = append(*out, rootName(path))
		}
	}
}

// onlyIgnored reports whether a value added by the destination holds nothing but ignored paths (a meta with
// only versionId and lastUpdated).
func onlyIgnored(path string, v any, ignore map[string]bool) bool {
	m, ok := v.(map[string]any)
	if !ok || len(ignore) == 0 {
		return false
	}
	for k := range m {
		if !ignore[join(path, k)] {
			return false
		}
	}
	return true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func rootName(path string) string {
	if path == "" {
		return "(resource)"
	}
	return path
}
