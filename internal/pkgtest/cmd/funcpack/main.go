// Command funcpack stages host.json and the function folders next to a built handler, writes the deployment zip
// with the handler's exec bit, and checks the result. scripts/package.sh runs it after the build.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fhir-migrator/fhir-migrator/internal/pkgtest"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "funcpack:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("funcpack", flag.ContinueOnError)
	root := fs.String("root", ".", "app root holding host.json and the function folders")
	stage := fs.String("stage", "", "folder holding the built executable; host.json and function folders are copied here")
	out := fs.String("zip", "", "zip file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stage == "" || *out == "" {
		return fmt.Errorf("-stage and -zip are required")
	}
	if err := pkgtest.Stage(*root, *stage); err != nil {
		return err
	}
	if err := pkgtest.WriteZip(*stage, *out); err != nil {
		return err
	}
	if err := pkgtest.Check(*out, *root); err != nil {
		return fmt.Errorf("package %s is not what the host expects:\n%w", *out, err)
	}
	fmt.Fprintf(stdout, "wrote %s (staged in %s)\n", *out, *stage)
	return nil
}
